/**
 * The default tiny model (`npm run model:tiny`: seeded random weights, Phi-4's real 100352-token
 * vocabulary) matches the float64 reference fed the same seeded weights: what `npm start` serves by
 * default computes the Phi-3 forward pass, not merely something self-consistent.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ModelRunner } from "../../runner/model-runner.ts";
import { tinyConfig } from "../tiny-model.ts";
import { RandomWeights } from "../random-weights.ts";
import { writeModel } from "../write-model.ts";
import { ReferencePhi3, relativeLogitError } from "../reference/phi3-reference.ts";
import { seededUniform } from "../../../shared/seeded-uniform.ts";

const SEED = 3;
const config = tinyConfig();
let root: string;
let runner: ModelRunner;
let reference: ReferencePhi3;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "tiny-model-verification-"));
  await writeModel(config, new RandomWeights(config, SEED), { outDir: root, dtype: "fp32" });
  runner = await ModelRunner.load({ modelDir: root, numBlocks: 16, blockSize: 16, intraOpThreads: 2 });
  reference = await ReferencePhi3.load(config, new RandomWeights(config, SEED));
});

afterAll(async () => {
  await runner?.release();
  await rm(root, { recursive: true, force: true });
});

it("tiny model (vocabulary 100352): prefill and 8 cached decode steps match the float64 reference", async () => {
  expect(config.vocabSize).toBe(100_352);
  const random = seededUniform(9);
  const tokens = Array.from({ length: 40 }, () => Math.floor(random() * config.vocabSize));
  const prompt = tokens.slice(0, 32);
  const table = [5, 2, 11]; // room for 48 tokens, not in order
  const cache = reference.newCache();
  const logits = await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: table }]);
  expect(logits.length).toBe(config.vocabSize);
  expect(relativeLogitError(logits, reference.forward(cache, prompt))).toBeLessThan(1e-4);
  for (let i = 32; i < tokens.length; i++) {
    const step = await runner.forward([{ tokens: [tokens[i]], pastLen: i, blockTable: table }]);
    expect(relativeLogitError(step, reference.forward(cache, [tokens[i]])), `decode step at position ${i}`).toBeLessThan(1e-4);
  }
});
