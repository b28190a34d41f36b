/**
 * npm run model:verify -- --model DIR --from HF_DIR [--prompt TEXT | --tokens 1,2,3] [--steps N] [--tolerance X]
 *
 * Does a converted model compute what its checkpoint says? Runs the prompt and then N greedy decode
 * steps through the paged KV cache with the runner the model's layout needs (host: the CPU runner;
 * device: the WebGPU runner, when an adapter is present), and the same tokens through the float64
 * reference read straight from the Hugging Face checkpoint (reference/phi3-reference.ts). Each step
 * compares log-probabilities of the model's greedy token and the reference's top 5; greedy tokens must
 * agree wherever the reference's top-2 margin exceeds twice the tolerance (beyond that, a within-tolerance
 * model cannot flip the choice). int4's 4-bit steps legitimately flip close choices: its greedy check is
 * skipped. The reference holds every weight as float32 and computes in scalar float64: for Phi-4 it
 * needs ≈ 60 GB of memory and tens of seconds per token.
 *
 * Exit codes: 0 within tolerance; 1 beyond it (or an I/O failure, a bug); 2 bad input or usage (one line
 * on stderr: missing directories, a model not converted from that checkpoint, bad flags).
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { CheckpointError, openHfCheckpoint } from "../hf-checkpoint.ts";
import { ModelFilesError, readModelFiles, type ModelFiles } from "../model-files.ts";
import type { Phi3Config } from "../phi3-config.ts";
import { ReferencePhi3 } from "../reference/phi3-reference.ts";
import { compareStep } from "../reference/logprob-comparison.ts";
import { loadRunner } from "../../runner/load-runner.ts";
import { MIN_DEVICE_BLOCK_SIZE, type ExecutionProvider } from "../../runner/execution-provider.ts";
import { probeWebGpu } from "../../runner/webgpu-probe.ts";
import type { StepRunner } from "../../runner/step-runner.ts";
import { phi4Tokenizer } from "../../tokenizer/phi4-tokenizer.ts";

const USAGE = "usage: npm run model:verify -- --model DIR --from HF_DIR [--prompt TEXT | --tokens 1,2,3] [--steps N] [--tolerance X]";

/** max |Δ logprob| allowed by default, per stored dtype: float rounding (fp32, fp16) to quantisation steps (int8, int4). */
const DEFAULT_TOLERANCE = { fp32: 1e-4, fp16: 4e-2, int8: 0.1, int4: 2 } as const;
const DEFAULT_PROMPT = "The capital of France is";
const DEFAULT_STEPS = 8;
/** Reference tokens whose logprobs are compared at each step (besides the model's greedy token). */
const TOP_N = 5;
/** Host layout block size: small, so even a short prompt spans several blocks. */
const HOST_BLOCK_SIZE = 16;

class UsageError extends Error {}

interface Options {
  modelDir: string;
  hfDir: string;
  prompt: string | null;
  tokens: number[] | null;
  steps: number;
  tolerance: number | null;
}

function parseOptions(): Options | null {
  let values: { model?: string; from?: string; prompt?: string; tokens?: string; steps?: string; tolerance?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        model: { type: "string" },
        from: { type: "string" },
        prompt: { type: "string" },
        tokens: { type: "string" },
        steps: { type: "string" },
        tolerance: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}; ${USAGE}`);
  }
  if (values.help) return null;
  if (!values.model || !values.from) throw new UsageError(`--model and --from are required; ${USAGE}`);
  if (values.prompt !== undefined && values.tokens !== undefined) throw new UsageError("pass --prompt or --tokens, not both");
  let tokens: number[] | null = null;
  if (values.tokens !== undefined) {
    tokens = values.tokens.split(",").map((t) => (/^\s*\d+\s*$/.test(t) ? Number(t) : NaN));
    if (tokens.length === 0 || tokens.some((t) => !Number.isSafeInteger(t))) throw new UsageError(`--tokens ${values.tokens} is not a comma-separated list of token ids`);
  }
  if (values.prompt === "") throw new UsageError("--prompt is empty");
  const steps = values.steps === undefined ? DEFAULT_STEPS : Number(values.steps);
  if (!Number.isSafeInteger(steps) || steps < 0 || values.steps?.trim() === "") throw new UsageError(`--steps ${values.steps} is not a whole number ≥ 0`);
  const tolerance = values.tolerance === undefined ? null : Number(values.tolerance);
  if (tolerance !== null && !(tolerance > 0 && Number.isFinite(tolerance))) throw new UsageError(`--tolerance ${values.tolerance} is not a positive number`);
  return { modelDir: resolve(values.model), hfDir: resolve(values.from), prompt: tokens ? null : (values.prompt ?? DEFAULT_PROMPT), tokens, steps, tolerance };
}

/** The fields that decide what the network computes; eos/pad/context length may differ by choice. */
const ARCHITECTURE_FIELDS = ["vocabSize", "hiddenSize", "numLayers", "numHeads", "numKvHeads", "headDim", "intermediateSize", "rmsNormEps", "ropeTheta"] as const;

function checkSameArchitecture(model: Phi3Config, checkpoint: Phi3Config): void {
  for (const field of ARCHITECTURE_FIELDS) {
    if (model[field] !== checkpoint[field]) {
      throw new UsageError(`--model's model-config.json has ${field} ${model[field]}, --from's config.json ${checkpoint[field]}: the model was not converted from this checkpoint`);
    }
  }
}

function promptTokens(options: Options, config: Phi3Config): number[] {
  const tokens = options.tokens ?? phi4Tokenizer().encode(options.prompt!);
  const outside = tokens.find((t) => t >= config.vocabSize);
  if (outside !== undefined) {
    const source = options.tokens ? "--tokens" : "--prompt (Phi-4 tokenizer)";
    throw new UsageError(`${source} gives token id ${outside}, outside the model's vocabulary of ${config.vocabSize}${options.tokens ? "" : "; pass --tokens"}`);
  }
  if (tokens.length + options.steps > config.contextLength) {
    throw new UsageError(`${tokens.length} prompt tokens + ${options.steps} steps exceed the model's context of ${config.contextLength}`);
  }
  return tokens;
}

/** The runner the layout needs: the CPU runner (or CUDA with ORT_EP=cuda) for host, WebGPU for device. */
async function runnerFor(files: ModelFiles, tokens: number): Promise<StepRunner> {
  let ep: ExecutionProvider = process.env.ORT_EP === "cuda" ? "cuda" : "cpu";
  let blockSize = HOST_BLOCK_SIZE;
  if (files.layout === "device") {
    const why = await probeWebGpu();
    if (why !== null) throw new UsageError(`--model holds the device layout, which runs only on a WebGPU adapter, and none is usable here (${why})`);
    ep = "webgpu";
    blockSize = MIN_DEVICE_BLOCK_SIZE;
  }
  return loadRunner({ modelDir: files.dir, ep, numBlocks: Math.ceil(tokens / blockSize), blockSize });
}

function formatError(x: number): string {
  return x.toExponential(2);
}

async function main(): Promise<boolean> {
  const options = parseOptions();
  if (!options) {
    process.stdout.write(USAGE + "\n");
    return true;
  }
  const files = await readModelFiles(options.modelDir);
  const checkpoint = await openHfCheckpoint(options.hfDir);
  let reference: ReferencePhi3;
  let prompt: number[];
  try {
    checkSameArchitecture(files.config, checkpoint.config);
    prompt = promptTokens(options, files.config);
    reference = await ReferencePhi3.load(checkpoint.config, checkpoint.weights);
  } finally {
    await checkpoint.weights.close();
  }
  const tolerance = options.tolerance ?? DEFAULT_TOLERANCE[files.dtype];
  const greedyChecked = files.dtype !== "int4";
  const total = prompt.length + options.steps;

  const runner = await runnerFor(files, total);
  // Blocks handed out last-first, so attention reads a block table that is not one contiguous run.
  const blockTable = Array.from({ length: runner.numBlocks }, (_, i) => runner.numBlocks - 1 - i);
  const cache = reference.newCache();
  const V = files.config.vocabSize;
  process.stdout.write(
    `verifying ${files.dir} (${files.dtype}, ${files.layout} layout) against ${options.hfDir}: ${prompt.length} prompt tokens, ${options.steps} decode steps, tolerance ${tolerance}${greedyChecked ? "" : " (int4: greedy check skipped)"}\n`,
  );

  let maxError = 0;
  let clearSteps = 0;
  let greedyAgreed = 0;
  let failedSteps = 0;
  try {
    let fresh = prompt;
    let pastLen = 0;
    for (let step = 0; step <= options.steps; step++) {
      const out = await runner.run([{ tokens: fresh, pastLen, blockTable }]);
      const modelLogits = out.logits!.subarray(0, V);
      const c = compareStep(modelLogits, reference.forward(cache, fresh), TOP_N);
      const clear = greedyChecked && c.referenceMargin > 2 * tolerance;
      const greedyOk = !clear || c.modelGreedy === c.referenceGreedy;
      const withinTolerance = c.maxError <= tolerance; // false for NaN too
      if (clear) clearSteps++;
      if (clear && greedyOk) greedyAgreed++;
      if (!greedyOk || !withinTolerance) failedSteps++;
      maxError = Number.isNaN(c.maxError) || c.maxError > maxError ? c.maxError : maxError;
      process.stdout.write(
        `step ${step} ${step === 0 ? `prefill ${fresh.length}` : "decode 1"}: greedy ${c.modelGreedy} (reference ${c.referenceGreedy}, margin ${c.referenceMargin.toFixed(3)}${clear ? "" : ", not checked"}) ` +
          `|Δ logprob| greedy ${formatError(c.greedyError)} top-${TOP_N} ${formatError(c.maxError)} ${withinTolerance && greedyOk ? "ok" : "FAIL"}\n`,
      );
      pastLen += fresh.length;
      fresh = [c.modelGreedy];
    }
  } finally {
    await runner.release();
  }
  const passed = failedSteps === 0;
  process.stdout.write(
    `${passed ? "PASS" : "FAIL"}: max |Δ logprob| ${formatError(maxError)} (tolerance ${tolerance}) over ${options.steps + 1} steps; ` +
      (greedyChecked ? `greedy tokens equal at ${greedyAgreed}/${clearSteps} steps with a clear reference margin` : "greedy check skipped (int4)") +
      (passed ? "" : `; ${failedSteps} step(s) failed`) +
      "\n",
  );
  return passed;
}

main().then(
  (passed) => process.exit(passed ? 0 : 1),
  (err: unknown) => {
    const inputError = err instanceof UsageError || err instanceof CheckpointError || err instanceof ModelFilesError;
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`error: ${message.replace(/\s+/g, " ").trim()}\n`);
    if (!inputError && err instanceof Error && err.stack && process.env.DEBUG) process.stderr.write(err.stack + "\n");
    process.exit(inputError ? 2 : 1);
  },
);
