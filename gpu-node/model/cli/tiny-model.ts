/**
 * `npm run model:tiny -- --out DIR [--seed N] [--layers L --hidden H --heads A --kv-heads K --intermediate I]
 *  [--dtype fp32|fp16|int8|int4] [--layout host|device]`
 * The device layout (fp16 or int4, default fp16) runs on the WebGPU execution provider with the KV cache
 * on the device; `--layout device --dtype fp32` is refused.
 * Writes a Phi-3 model with seeded random weights and Phi-4's real vocabulary (so the real tokenizer
 * drives it). Same flags and seed → bit-identical files. Bad flags → one line on stderr, exit 2.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import type { Phi3Config } from "../phi3-config.ts";
import { buildTinyModel, tinyConfig } from "../tiny-model.ts";
import { MODEL_DTYPES, type ModelDtype } from "../graph/phi3-decoder-graph.ts";
import { DEVICE_DTYPES } from "../graph/device-decoder-graph.ts";
import { MODEL_LAYOUTS, type ModelLayout } from "../model-files.ts";

export interface TinyModelArgs {
  out: string;
  seed: number;
  dtype: ModelDtype;
  layout: ModelLayout;
  config: Phi3Config;
}

export function parseTinyModelArgs(argv: string[]): TinyModelArgs {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      out: { type: "string" },
      seed: { type: "string" },
      layers: { type: "string" },
      hidden: { type: "string" },
      heads: { type: "string" },
      "kv-heads": { type: "string" },
      intermediate: { type: "string" },
      dtype: { type: "string" },
      layout: { type: "string" },
    },
  });
  if (positionals.length > 0) throw new Error(`unexpected argument ${positionals[0]}`);
  if (!values.out) throw new Error("--out DIR is required");
  const int = (flag: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) throw new Error(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const seed = int("seed", values.seed, 0) ?? 0;
  if (seed > 0xffffffff) throw new Error(`--seed must be below 2^32, got ${seed}`);
  const layout = (values.layout ?? "host") as ModelLayout;
  if (!MODEL_LAYOUTS.includes(layout)) throw new Error(`--layout must be one of ${MODEL_LAYOUTS.join(", ")}, got ${JSON.stringify(values.layout)}`);
  const dtype = (values.dtype ?? (layout === "device" ? "fp16" : "fp32")) as ModelDtype;
  if (!MODEL_DTYPES.includes(dtype)) throw new Error(`--dtype must be one of ${MODEL_DTYPES.join(", ")}, got ${JSON.stringify(values.dtype)}`);
  if (layout === "device" && !(DEVICE_DTYPES as readonly string[]).includes(dtype)) {
    throw new Error(`--layout device computes in fp16: --dtype must be one of ${DEVICE_DTYPES.join(", ")}, got ${dtype}`);
  }
  const overrides: Partial<Phi3Config> = {};
  const layers = int("layers", values.layers, 1);
  const hidden = int("hidden", values.hidden, 1);
  const heads = int("heads", values.heads, 1);
  const kvHeads = int("kv-heads", values["kv-heads"], 1);
  const intermediate = int("intermediate", values.intermediate, 1);
  if (layers !== undefined) overrides.numLayers = layers;
  if (hidden !== undefined) overrides.hiddenSize = hidden;
  if (heads !== undefined) overrides.numHeads = heads;
  if (kvHeads !== undefined) overrides.numKvHeads = kvHeads;
  if (intermediate !== undefined) overrides.intermediateSize = intermediate;
  const config = tinyConfig(overrides);
  if (config.hiddenSize % config.numHeads !== 0) throw new Error(`--hidden (${config.hiddenSize}) must be a multiple of --heads (${config.numHeads})`);
  if (config.numHeads % config.numKvHeads !== 0) throw new Error(`--heads (${config.numHeads}) must be a multiple of --kv-heads (${config.numKvHeads})`);
  if (config.headDim % 16 !== 0) throw new Error(`head size --hidden/--heads = ${config.headDim} must be a multiple of 16`);
  return { out: values.out, seed, dtype, layout, config };
}

async function main(): Promise<void> {
  let args: TinyModelArgs;
  try {
    args = parseTinyModelArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`model:tiny: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const started = performance.now();
  await buildTinyModel(args.out, { seed: args.seed, config: args.config, dtype: args.dtype, layout: args.layout });
  const c = args.config;
  process.stdout.write(
    `wrote ${path.resolve(args.out)} (${c.numLayers} layers, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads}, ` +
      `intermediate ${c.intermediateSize}, vocab ${c.vocabSize}, ${args.dtype}, ${args.layout} layout, seed ${args.seed}) in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("tiny-model.ts")) {
  main().catch((err) => {
    process.stderr.write(`model:tiny: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
