/**
 * Which model directory the node serves. MODEL_DIR names one (it must hold a model); without it the
 * node serves the seeded tiny model under models/tiny, writing it on first start (a second or two), so
 * `npm run gpu-node` works on a fresh checkout.
 */
import { readModelFiles } from "../model/model-files.ts";
import { ensureTinyModel, TINY_DEVICE_MODEL_DIR, TINY_MODEL_DIR } from "../model/tiny-model.ts";
import type { ExecutionProvider } from "../runner/execution-provider.ts";
import { ConfigError } from "./config.ts";

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
  if (ep === "webgpu") return { dir: TINY_DEVICE_MODEL_DIR, built: await ensureTinyModel(TINY_DEVICE_MODEL_DIR, { dtype: "fp16", layout: "device" }) };
  return { dir: TINY_MODEL_DIR, built: await ensureTinyModel(TINY_MODEL_DIR) };
}
