/** Builds the seeded tiny model into a fresh temp dir for a test file (a second or two). */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { buildTinyModel as writeTinyModel } from "../../model/tiny-model.ts";

export async function buildTinyModel(seed = 1): Promise<{ modelDir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "phi4-engine-test-"));
  const modelDir = path.join(dir, "model");
  await writeTinyModel(modelDir, { seed });
  return { modelDir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
