/** Builds the seeded tiny model into a fresh temp dir for a test file (a second or two). */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { tinyConfig } from "../../model/cli/tiny-model.ts";
import { RandomWeights } from "../../model/random-weights.ts";
import { writeModel } from "../../model/write-model.ts";

export async function buildTinyModel(seed = 1): Promise<{ modelDir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "phi4-engine-test-"));
  const modelDir = path.join(dir, "model");
  const config = tinyConfig();
  await writeModel(config, new RandomWeights(config, seed), { outDir: modelDir, dtype: "fp32" });
  return { modelDir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
