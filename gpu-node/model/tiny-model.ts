/**
 * The tiny model: Phi-4's real vocabulary, context length, RoPE base and special ids around a small
 * random body, so the real tokenizer drives it and every part of the system runs in seconds on a laptop.
 * One module for everything that needs it: the GPU node's default model, `npm start`, the tests and the
 * benchmarks. Same config and seed → bit-identical files.
 */
import { access } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { MODEL_CONFIG_FILE, type ModelLayout } from "./model-files.ts";
import { PHI4_CONFIG, type Phi3Config } from "./phi3-config.ts";
import { RandomWeights } from "./random-weights.ts";
import type { ModelDtype } from "./graph/phi3-decoder-graph.ts";
import { writeModel } from "./write-model.ts";

/** The node's default model home: `models/tiny` at the repository root (ignored by git, built on first start). */
export const TINY_MODEL_DIR = fileURLToPath(new URL("../../models/tiny", import.meta.url));

/** The same tiny model in the device layout (fp16), the default with ORT_EP=webgpu. */
export const TINY_DEVICE_MODEL_DIR = fileURLToPath(new URL("../../models/tiny-device", import.meta.url));

/** The default seed: the same bytes on every machine. */
export const TINY_MODEL_SEED = 0;

/** The default tiny model: real Phi-4 vocabulary, context, rope theta and special ids; everything else small. */
export function tinyConfig(overrides: Partial<Phi3Config> = {}): Phi3Config {
  const c: Phi3Config = {
    ...PHI4_CONFIG,
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    intermediateSize: 128,
    ...overrides,
  };
  if (overrides.hiddenSize !== undefined || overrides.numHeads !== undefined) {
    c.headDim = overrides.headDim ?? c.hiddenSize / c.numHeads;
  }
  return c;
}

export interface TinyModelOptions {
  seed?: number;
  config?: Phi3Config;
  dtype?: ModelDtype;
  /** Default "host"; "device" takes fp16 or int4 (model-files.ts). */
  layout?: ModelLayout;
}

/** Writes the seeded tiny model into `dir`. */
export async function buildTinyModel(dir: string, options: TinyModelOptions = {}): Promise<void> {
  const config = options.config ?? tinyConfig();
  const weights = new RandomWeights(config, options.seed ?? TINY_MODEL_SEED);
  // writeModel moves a finished temp directory into place, so two processes building at once cannot see half a model.
  const layout = options.layout ?? "host";
  await writeModel(config, weights, { outDir: dir, dtype: options.dtype ?? (layout === "device" ? "fp16" : "fp32"), layout });
  await weights.close();
}

/** Builds the tiny model into `dir` unless a model is already there (its config file is written last); true when built. */
export async function ensureTinyModel(dir: string = TINY_MODEL_DIR, options: TinyModelOptions = {}): Promise<boolean> {
  if (await access(path.join(dir, MODEL_CONFIG_FILE)).then(() => true, () => false)) return false;
  await buildTinyModel(dir, options);
  return true;
}

/**
 * The default-config tiny model of `seed`, built once per machine into a cache under os.tmpdir() and shared
 * by test files and benchmark runs (same seed → same bytes, so a cached copy is as good as a fresh one).
 */
export async function cachedTinyModel(seed: number = TINY_MODEL_SEED): Promise<string> {
  const dir = path.join(os.tmpdir(), "phi4-tiny-models", `seed-${seed}`);
  await ensureTinyModel(dir, { seed });
  return dir;
}
