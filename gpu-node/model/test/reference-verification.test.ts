/**
 * The converted ONNX model, run by the ModelRunner, against the independent float64 reference:
 * a random tiny Hugging Face checkpoint (bf16, sharded, real tensor names; and an f32 one) is
 * converted with `npm run model:convert` to fp32, fp16, int8 and int4; the reference reads the same
 * safetensors directly.
 *
 *   fp32: prefill and 16 cached decode steps agree to a relative error < 1e-4;
 *   fp16, int4: agree to < 1e-4 with the reference run on the same rounded weights (int8, which also
 *     rounds activations to int8, to < 0.05); the error
 *     against the exact weights is measured and printed (asserted only against a loose bound);
 *   greedy generation of 64 tokens with the KV cache equals greedy generation by full recompute;
 *   a ragged batch of 8 rows gives each row the logits it gets when run alone.
 *
 * Relative error of one logits vector = max |runner − reference| / max |reference|.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelRunner } from "../../runner/model-runner.ts";
import type { BatchRow } from "../../runner/step-runner.ts";
import { ReferencePhi3, relativeLogitError, type WeightRounding } from "../reference/phi3-reference.ts";
import { FP16_WEIGHTS, INT4_WEIGHTS, INT8_WEIGHTS } from "./weight-rounding.ts";
import { TEST_PHI3_CONFIG, writeRandomHfCheckpoint } from "./random-hf-checkpoint.ts";
import { seededUniform } from "../../../shared/seeded-uniform.ts";

const REPO_ROOT = join(import.meta.dirname, "..", "..", "..");
const CONVERT = join(REPO_ROOT, "gpu-node", "model", "cli", "convert.ts");
const config = TEST_PHI3_CONFIG;
const V = config.vocabSize;
/** Small blocks so every sequence spans several, handed out in scrambled order. */
const BLOCK_SIZE = 4;
const NUM_BLOCKS = 512;

/**
 * One converted model per case. "same rounding" is the reference run with the weights the model
 * stores (fp16/int8/int4 rounding modelled in weight-rounding.ts): it must match as tightly as fp32 does,
 * so a wrong packing or cast cannot hide inside the quantization error. "exact" is the reference with
 * the checkpoint's own values: the error a user of that dtype gets, measured and reported.
 * A bf16 checkpoint (as Phi-4 ships) loses nothing in fp16 (bf16's 8 mantissa bits fit in fp16's 10),
 * so fp16 is also measured from an f32 checkpoint, where its rounding shows.
 */
interface Case {
  label: string;
  checkpoint: "bf16" | "f32";
  dtype: "fp32" | "fp16" | "int8" | "int4";
  rounding?: WeightRounding;
  /** Bound on the error against the exact reference: tight where nothing is lost, loose (sanity) otherwise. */
  exactBound: number;
  /** Bound on the error against the reference with the same rounding. */
  sameRoundingBound: number;
}
const CASES: Case[] = [
  { label: "fp32 from bf16", checkpoint: "bf16", dtype: "fp32", exactBound: 1e-4, sameRoundingBound: 1e-4 },
  { label: "fp16 from bf16", checkpoint: "bf16", dtype: "fp16", exactBound: 1e-4, sameRoundingBound: 1e-4 },
  { label: "fp16 from f32", checkpoint: "f32", dtype: "fp16", rounding: FP16_WEIGHTS, exactBound: 1e-2, sameRoundingBound: 1e-4 },
  // int8 also quantises each activation block to int8 (MatMulNBits accuracy_level 4, the fast CPU path), which
  // the reference does not model: ≈ 1e-2 remains against the same weights; a wrong packing would be O(1).
  { label: "int8 from f32", checkpoint: "f32", dtype: "int8", rounding: INT8_WEIGHTS, exactBound: 0.05, sameRoundingBound: 0.05 },
  { label: "int8 from bf16", checkpoint: "bf16", dtype: "int8", rounding: INT8_WEIGHTS, exactBound: 0.05, sameRoundingBound: 0.05 },
  { label: "int4 from f32", checkpoint: "f32", dtype: "int4", rounding: INT4_WEIGHTS, exactBound: 0.5, sameRoundingBound: 1e-4 },
  // bf16 weights often sit exactly halfway between two int4 codes (7w/max|w| = k + 0.5); which way such a
  // tie goes is the quantizer's choice, so against the modelled rounding only a loose bound holds here.
  { label: "int4 from bf16", checkpoint: "bf16", dtype: "int4", rounding: INT4_WEIGHTS, exactBound: 0.5, sameRoundingBound: 0.1 },
];

let root: string;
const checkpoints = { bf16: "", f32: "" };
const runners = new Map<string, ModelRunner>();
const exactReferences = new Map<string, ReferencePhi3>();
const roundedReferences = new Map<string, ReferencePhi3>();
const measured: Record<string, { prefillExact: number; decodeExact: number; prefillSameRounding: number; decodeSameRounding: number }> = {};
let reference: ReferencePhi3; // exact reference of the bf16 checkpoint

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "reference-verification-"));
  checkpoints.bf16 = join(root, "hf-bf16");
  checkpoints.f32 = join(root, "hf-f32");
  await writeRandomHfCheckpoint(checkpoints.bf16, { config, seed: 42, dtype: "BF16", shards: 2 });
  await writeRandomHfCheckpoint(checkpoints.f32, { config, seed: 43, dtype: "F32" });
  const modelDir = (c: Case) => join(root, c.label.replace(/ /g, "-"));
  await Promise.all(
    CASES.map((c) =>
      promisify(execFile)(process.execPath, ["--import", "tsx", CONVERT, "--from", checkpoints[c.checkpoint], "--out", modelDir(c), "--dtype", c.dtype], { cwd: REPO_ROOT }),
    ),
  );
  for (const c of CASES) {
    runners.set(c.label, await ModelRunner.load({ modelDir: modelDir(c), numBlocks: NUM_BLOCKS, blockSize: BLOCK_SIZE, intraOpThreads: 2 }));
    // The reference reads the checkpoint's safetensors itself, with the config the checkpoint was made from.
    if (!exactReferences.has(c.checkpoint)) exactReferences.set(c.checkpoint, await ReferencePhi3.fromSafetensorsDir(checkpoints[c.checkpoint], config));
    const exact = exactReferences.get(c.checkpoint)!;
    roundedReferences.set(c.label, c.rounding ? await ReferencePhi3.fromSafetensorsDir(checkpoints[c.checkpoint], config, c.rounding) : exact);
  }
  reference = exactReferences.get("bf16")!;
});

afterAll(async () => {
  for (const runner of runners.values()) await runner.release();
  if (Object.keys(measured).length > 0) {
    console.log("relative logit error, max |runner - reference| / max |reference|, worst step of prefill(23) and 16 decode steps:");
    console.table(measured);
  }
  await rm(root, { recursive: true, force: true });
});

/** Hands out distinct block ids in a scrambled order, so block tables are not contiguous runs. */
class BlockPool {
  private readonly free: number[];
  constructor(seed: number) {
    const random = seededUniform(seed);
    this.free = Array.from({ length: NUM_BLOCKS }, (_, i) => i);
    for (let i = this.free.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [this.free[i], this.free[j]] = [this.free[j], this.free[i]];
    }
  }
  table(tokens: number): number[] {
    const n = Math.ceil(tokens / BLOCK_SIZE);
    if (n > this.free.length) throw new Error("test block pool exhausted");
    return this.free.splice(0, n);
  }
}

function randomTokens(n: number, seed: number): number[] {
  const random = seededUniform(seed);
  return Array.from({ length: n }, () => Math.floor(random() * V));
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function rowOf(logits: Float32Array, r: number): Float32Array {
  return logits.subarray(r * V, (r + 1) * V);
}

describe("converted model vs float64 reference", () => {
  it.each(CASES)("$label: prefill and 16 cached decode steps match the reference", async (c) => {
    const runner = runners.get(c.label)!;
    const prompt = randomTokens(23, 7);
    const followUp = randomTokens(16, 8); // fed one by one: the same inputs for all, whatever each predicts
    const table = new BlockPool(1).table(prompt.length + followUp.length);
    const exact = exactReferences.get(c.checkpoint)!;
    const rounded = roundedReferences.get(c.label)!;
    const exactCache = exact.newCache();
    const roundedCache = rounded.newCache();

    const prefill = await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: table }]);
    const errors = {
      prefillExact: relativeLogitError(prefill, exact.forward(exactCache, prompt)),
      decodeExact: 0,
      prefillSameRounding: relativeLogitError(prefill, rounded.forward(roundedCache, prompt)),
      decodeSameRounding: 0,
    };
    let pastLen = prompt.length;
    for (const token of followUp) {
      const logits = await runner.forward([{ tokens: [token], pastLen, blockTable: table }]);
      errors.decodeExact = Math.max(errors.decodeExact, relativeLogitError(logits, exact.forward(exactCache, [token])));
      errors.decodeSameRounding = Math.max(errors.decodeSameRounding, relativeLogitError(logits, rounded.forward(roundedCache, [token])));
      pastLen++;
    }
    measured[c.label] = errors;
    expect(errors.prefillSameRounding).toBeLessThan(c.sameRoundingBound);
    expect(errors.decodeSameRounding).toBeLessThan(c.sameRoundingBound);
    expect(errors.prefillExact).toBeLessThan(c.exactBound);
    expect(errors.decodeExact).toBeLessThan(c.exactBound);
  });

  it("fp32: a prompt filling most of the context, then decode steps up to its end", async () => {
    const runner = runners.get("fp32 from bf16")!;
    const tokens = randomTokens(config.contextLength, 21);
    const promptLength = config.contextLength - 8;
    const table = new BlockPool(4).table(config.contextLength);
    const cache = reference.newCache();
    const prompt = tokens.slice(0, promptLength);
    expect(relativeLogitError(await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: table }]), reference.forward(cache, prompt))).toBeLessThan(1e-4);
    for (let i = promptLength; i < tokens.length; i++) {
      const logits = await runner.forward([{ tokens: [tokens[i]], pastLen: i, blockTable: table }]);
      expect(relativeLogitError(logits, reference.forward(cache, [tokens[i]])), `position ${i}`).toBeLessThan(1e-4);
    }
  });

  it("fp32: greedy generation of 64 tokens with the KV cache equals greedy by full recompute", async () => {
    const runner = runners.get("fp32 from bf16")!;
    const prompt = randomTokens(9, 11);
    const table = new BlockPool(2).table(prompt.length + 64);
    const cachedTokens: number[] = [];
    let logits = await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: table }]);
    for (let step = 0; step < 64; step++) {
      const next = argmax(logits);
      cachedTokens.push(next);
      if (step < 63) logits = await runner.forward([{ tokens: [next], pastLen: prompt.length + step, blockTable: table }]);
    }

    // Full recompute by the reference: every step starts from an empty cache and reads the whole sequence.
    const recomputedTokens: number[] = [];
    const sequence = [...prompt];
    for (let step = 0; step < 64; step++) {
      const next = argmax(reference.recompute(sequence));
      recomputedTokens.push(next);
      sequence.push(next);
    }
    expect(cachedTokens).toEqual(recomputedTokens);
    expect(new Set(cachedTokens).size).toBeGreaterThan(8); // a real walk through the vocabulary, not one token repeated
  });

  it("fp32: a ragged batch of 8 rows gives each row the logits it gets alone", async () => {
    const runner = runners.get("fp32 from bf16")!;
    const pool = new BlockPool(3);
    // Rows of different past lengths and different numbers of new tokens (first prompts, chunks, decode).
    const shapes = [
      { past: 0, fresh: 1 },
      { past: 0, fresh: 13 },
      { past: 5, fresh: 1 },
      { past: 8, fresh: 4 },
      { past: 17, fresh: 1 },
      { past: 3, fresh: 30 },
      { past: 31, fresh: 2 },
      { past: 0, fresh: 7 },
    ];
    const sequences = shapes.map((s, r) => randomTokens(s.past + s.fresh, 100 + r));
    const batchRows: BatchRow[] = [];
    const aloneRows: BatchRow[] = [];
    for (const [r, s] of shapes.entries()) {
      const batchTable = pool.table(s.past + s.fresh + 1); // + 1: room for the next step
      const aloneTable = pool.table(s.past + s.fresh);
      const past = sequences[r].slice(0, s.past);
      if (past.length > 0) {
        await runner.forward([{ tokens: past, pastLen: 0, blockTable: batchTable }]);
        await runner.forward([{ tokens: past, pastLen: 0, blockTable: aloneTable }]);
      }
      const fresh = sequences[r].slice(s.past);
      batchRows.push({ tokens: fresh, pastLen: s.past, blockTable: batchTable });
      aloneRows.push({ tokens: fresh, pastLen: s.past, blockTable: aloneTable });
    }

    const batched = await runner.forward(batchRows);
    for (let r = 0; r < 8; r++) {
      const alone = await runner.forward([aloneRows[r]]);
      expect(relativeLogitError(rowOf(batched, r), alone), `row ${r}`).toBeLessThan(1e-5);
      expect(relativeLogitError(rowOf(batched, r), reference.recompute(sequences[r])), `row ${r} vs reference`).toBeLessThan(1e-4);
    }

    // The K/V rows the batch stored serve the next (all-decode) batch like each row's own.
    const nextTokens = sequences.map((_, r) => argmax(rowOf(batched, r)));
    const next = await runner.forward(batchRows.map((row, r) => ({ tokens: [nextTokens[r]], pastLen: row.pastLen + row.tokens.length, blockTable: row.blockTable })));
    for (let r = 0; r < 8; r++) {
      const expected = reference.recompute([...sequences[r], nextTokens[r]]);
      expect(relativeLogitError(rowOf(next, r), expected), `row ${r} next step vs reference`).toBeLessThan(1e-4);
    }
  });
});

describe("the reference itself", () => {
  it("gives the same logits with its KV cache as by full recompute", () => {
    const tokens = randomTokens(20, 5);
    const cache = reference.newCache();
    reference.forward(cache, tokens.slice(0, 12));
    for (let i = 12; i < 20; i++) {
      const cached = reference.forward(cache, [tokens[i]]);
      expect(relativeLogitError(cached, reference.recompute(tokens.slice(0, i + 1)))).toBeLessThan(1e-12);
    }
  });

  it("depends on the order of the tokens (positions reach the attention)", () => {
    const a = reference.recompute([10, 20, 30]);
    const b = reference.recompute([20, 10, 30]);
    expect(relativeLogitError(a, b)).toBeGreaterThan(1e-3);
  });
});
