/**
 * Which model directory the node serves. MODEL_DIR names one (it must hold a model); without it the
 * node serves the seeded tiny model under models/tiny, writing it on first start (a second or two), so
 * `npm run gpu-node` works on a fresh checkout.
 */
import { readModelFiles } from "../model/model-files.ts";
import { ensureTinyModel, TINY_MODEL_DIR } from "../model/tiny-model.ts";
import { ConfigError } from "./config.ts";

export interface ModelDirChoice {
  dir: string;
  /** True when this call wrote the tiny model. */
  built: boolean;
}

export async function resolveModelDir(configured: string | null): Promise<ModelDirChoice> {
  if (configured !== null) {
    try {
      await readModelFiles(configured);
    } catch (err) {
      throw new ConfigError(`MODEL_DIR: ${(err as Error).message}`);
    }
    return { dir: configured, built: false };
  }
  return { dir: TINY_MODEL_DIR, built: await ensureTinyModel(TINY_MODEL_DIR) };
}
