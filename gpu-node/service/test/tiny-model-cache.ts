/**
 * The seeded tiny model for service tests, built once per seed into a cache dir under os.tmpdir() and
 * shared by test files (same seed → same bytes, and writeModel moves finished files into place, so two
 * files building it at once both end with a whole model).
 */
import { access } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { tinyConfig } from "../../model/cli/tiny-model.ts";
import { MODEL_CONFIG_FILE } from "../../model/model-files.ts";
import { RandomWeights } from "../../model/random-weights.ts";
import { writeModel } from "../../model/write-model.ts";

export async function tinyModelDir(seed = 0): Promise<string> {
  const dir = path.join(os.tmpdir(), "phi4-service-test-models", `tiny-seed-${seed}`);
  const ready = await access(path.join(dir, MODEL_CONFIG_FILE)).then(() => true, () => false);
  if (!ready) {
    const config = tinyConfig();
    await writeModel(config, new RandomWeights(config, seed), { outDir: dir, dtype: "fp32" });
  }
  return dir;
}
