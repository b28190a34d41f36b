/**
 * npm run model:convert -- --from HF_DIR --out DIR --dtype fp32|fp16|int8|int4 [--layout host|device] [--force]
 *
 * --layout device writes the graph for GPUs (WebGPU execution provider, KV cache on the device; fp16 or
 * int4 only); the default host layout runs on any provider with the KV cache in host memory.
 *
 * Converts a Hugging Face Phi-3/Phi-4 safetensors checkpoint into this project's ONNX layout,
 * one tensor at a time. The model is written into a temporary directory beside DIR and renamed
 * into place only when complete, so a failed or interrupted conversion leaves nothing behind.
 *
 * Exit codes: 0 done; 2 bad or unsupported input or usage (one line on stderr naming the field or
 * tensor); 130/143 interrupted (SIGINT/SIGTERM); 1 anything else (an I/O failure, a bug).
 */
import { SingleBar } from "cli-progress";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { CheckpointError, openHfCheckpoint, phi3TensorShapes } from "../hf-checkpoint.ts";
import type { Tensor32, WeightSource } from "../weights.ts";
import { writeModel } from "../write-model.ts";
import { DEVICE_DTYPES } from "../graph/device-decoder-graph.ts";
import { MODEL_LAYOUTS, type ModelLayout } from "../model-files.ts";

const DTYPES = ["fp32", "fp16", "int8", "int4"] as const;
type Dtype = (typeof DTYPES)[number];

class UsageError extends Error {}

class InterruptedError extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}; nothing was written`);
  }
}

const USAGE = "usage: npm run model:convert -- --from HF_DIR --out DIR --dtype fp32|fp16|int8|int4 [--layout host|device] [--force]";

async function main(): Promise<void> {
  let values: { from?: string; out?: string; dtype?: string; layout?: string; force?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        from: { type: "string" },
        out: { type: "string" },
        dtype: { type: "string" },
        layout: { type: "string" },
        force: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}; ${USAGE}`);
  }
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return;
  }
  if (!values.from || !values.out || !values.dtype) throw new UsageError(`--from, --out and --dtype are required; ${USAGE}`);
  if (!(DTYPES as readonly string[]).includes(values.dtype)) throw new UsageError(`--dtype ${values.dtype} is not one of ${DTYPES.join(", ")}`);
  const dtype = values.dtype as Dtype;
  const layout = (values.layout ?? "host") as ModelLayout;
  if (!MODEL_LAYOUTS.includes(layout)) throw new UsageError(`--layout ${values.layout} is not one of ${MODEL_LAYOUTS.join(", ")}`);
  if (layout === "device" && !(DEVICE_DTYPES as readonly string[]).includes(dtype)) {
    throw new UsageError(`--layout device computes in fp16: --dtype must be one of ${DEVICE_DTYPES.join(", ")}, got ${dtype}`);
  }
  const outDir = resolve(values.out);
  if ((await isNonEmptyDir(outDir)) && !values.force) throw new UsageError(`--out ${values.out} already exists and is not empty (pass --force to replace it)`);

  const { config, weights } = await openHfCheckpoint(resolve(values.from));
  // Everything is written under one staging directory beside DIR (writeModel's own scratch included),
  // so one removal cleans up after a failure or an interrupt.
  const stagingRoot = join(dirname(outDir), `.${basename(outDir)}.converting-${process.pid}`);
  const stagingModel = join(stagingRoot, "model");
  // An interrupt stops the conversion at the next tensor boundary; the normal failure path then
  // removes the staging directory (no removal racing a write still in flight).
  let interrupted: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = signal;
  };
  const checkInterrupt = () => {
    if (interrupted) throw new InterruptedError(interrupted);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const bar = new SingleBar({ stream: process.stderr, format: "converting {bar} {value}/{total} tensors | {tensor}", hideCursor: true });
  bar.start(phi3TensorShapes(config).size, 0, { tensor: "" });
  try {
    await mkdir(stagingRoot, { recursive: true });
    await writeModel(config, withProgress(weights, bar, checkInterrupt), { outDir: stagingModel, dtype, layout });
    checkInterrupt();
    await replaceDir(stagingModel, outDir);
  } finally {
    bar.stop();
    await weights.close();
    await rm(stagingRoot, { recursive: true, force: true });
  }
  process.stderr.write(
    `wrote ${outDir} (${dtype}, ${layout} layout, ${config.numLayers} layers, hidden ${config.hiddenSize}, vocab ${config.vocabSize})\n`,
  );
}

function withProgress(weights: WeightSource, bar: SingleBar, beforeEach: () => void): WeightSource {
  return {
    async get(name: string): Promise<Tensor32> {
      beforeEach();
      const tensor = await weights.get(name);
      bar.increment(1, { tensor: name });
      return tensor;
    },
    close: () => weights.close(),
  };
}

async function isNonEmptyDir(path: string): Promise<boolean> {
  const s = await stat(path).catch(() => null);
  if (!s) return false;
  if (!s.isDirectory()) return true;
  return (await readdir(path)).length > 0;
}

/** Puts the finished model at `target`; an existing target is moved aside first and removed after. */
async function replaceDir(staging: string, target: string): Promise<void> {
  const existing = await stat(target).catch(() => null);
  if (!existing) {
    await rename(staging, target);
    return;
  }
  const aside = `${staging}.previous`;
  await rename(target, aside);
  await rename(staging, target);
  await rm(aside, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  const inputError = err instanceof CheckpointError || err instanceof UsageError;
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`error: ${message.replace(/\s+/g, " ").trim()}\n`);
  if (!inputError && err instanceof Error && err.stack && process.env.DEBUG) process.stderr.write(err.stack + "\n");
  process.exit(err instanceof InterruptedError ? (err.signal === "SIGINT" ? 130 : 143) : inputError ? 2 : 1);
});
