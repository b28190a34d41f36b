/**
 * Which model directory the node serves. MODEL_DIR names one (it must hold a model); without it the
 * node serves the seeded tiny model under models/tiny, writing it with the project's builder on first
 * start (a second or two), so `npm run gpu-node` works on a fresh checkout.
 */
import { access } from "node:fs/promises";
import path from "node:path";
import { MODEL_CONFIG_FILE, readModelFiles } from "../model/model-files.ts";
import { RandomWeights } from "../model/random-weights.ts";
import { writeModel } from "../model/write-model.ts";
import { tinyConfig } from "../model/cli/tiny-model.ts";
import { ConfigError, DEFAULT_DEVICE_MODEL_DIR, DEFAULT_MODEL_DIR } from "./config.ts";
import type { ExecutionProvider } from "../runner/load-runner.ts";

/** The tiny model's seed: the same bytes on every machine. */
export const DEFAULT_TINY_SEED = 0;

export interface ModelDirChoice {
  dir: string;
  /** True when this call wrote the tiny model. */
  built: boolean;
}

/**
 * `ep` picks the tiny model's layout when none is configured: ORT_EP=webgpu serves the device layout
 * (fp16, under models/tiny-device), the other providers the host layout (fp32, under models/tiny).
 */
export async function resolveModelDir(configured: string | null, ep: ExecutionProvider = "cpu"): Promise<ModelDirChoice> {
  if (configured !== null) {
    try {
      await readModelFiles(configured);
    } catch (err) {
      throw new ConfigError(`MODEL_DIR: ${(err as Error).message}`);
    }
    return { dir: configured, built: false };
  }
  const device = ep === "webgpu";
  const dir = device ? DEFAULT_DEVICE_MODEL_DIR : DEFAULT_MODEL_DIR;
  if (await exists(path.join(dir, MODEL_CONFIG_FILE))) return { dir, built: false };
  const weights = new RandomWeights(tinyConfig(), DEFAULT_TINY_SEED);
  // writeModel moves a finished temp directory into place, so two nodes starting at once cannot see half a model.
  await writeModel(tinyConfig(), weights, device ? { outDir: dir, dtype: "fp16", layout: "device" } : { outDir: dir, dtype: "fp32" });
  await weights.close();
  return { dir, built: true };
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
