/**
 * The device layout on onnxruntime's WebGPU execution provider (a CPU Vulkan driver in CI: see
 * .ci/install-vulkan-driver) against the independent float64 reference: a random bf16 Hugging Face
 * checkpoint converted with `--dtype fp16 --layout device` (bf16 values are exact in fp16, so what differs
 * is fp16 arithmetic and the fp16 KV cache).
 *
 *   prefill, then greedy decode in separate runs over a scrambled (non-contiguous) block table: greedy
 *   tokens equal the reference's wherever the reference's top-2 margin is clear of fp16 noise, and the
 *   logprobs of the ranked head are within 2e-2;
 *   a ragged batch (prefill chunks and decodes of different past lengths in one run) gives each row what
 *   it gets alone; whole rows fetched from the device agree with the ranked head;
 *   a run whose past covers another sequence's blocks leaves those blocks' bytes untouched;
 *   bytes moved per step are what the inputs and the ranked outputs weigh;
 *   the layouts refuse the wrong provider with one line.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeviceRunner, type RankedRows } from "../device-runner.ts";
import { ModelRunner } from "../model-runner.ts";
import { LogitsNeed, type BatchRow } from "../step-runner.ts";
import { RandomWeights } from "../../model/random-weights.ts";
import { writeModel } from "../../model/write-model.ts";
import { tinyConfig } from "../../model/tiny-model.ts";
import { ReferencePhi3 } from "../../model/reference/phi3-reference.ts";
import { INT4_WEIGHTS } from "../../model/test/weight-rounding.ts";
import { TEST_PHI3_CONFIG, writeRandomHfCheckpoint } from "../../model/test/random-hf-checkpoint.ts";
import { seededUniform } from "../../../shared/seeded-uniform.ts";
import { ensureVulkanDevice } from "../../../test/vulkan-device.ts";

/** A CPU Vulkan device is slow, and slower still when the suite runs files in parallel. */
const DEVICE_TEST_TIMEOUT = 300_000;
const REPO_ROOT = join(import.meta.dirname, "..", "..", "..");
const CONVERT = join(REPO_ROOT, "gpu-node", "model", "cli", "convert.ts");
const config = TEST_PHI3_CONFIG;
const V = config.vocabSize;
const BLOCK_SIZE = 32;
const NUM_BLOCKS = 64;
/**
 * How far the device's logprobs (the sampled token's and the rest of the ranked head) may be from the float64
 * reference. Measured on this checkpoint (logits spread ~10 units) over 75 positions: ≤ 2.0e-2 for the
 * greedy token, ≤ 3.4e-2 over the top 8. WebGPU's fp16 MatMul rounds as it accumulates and is most of it
 * (fp32 MatMuls measured under 1e-2, at twice the weight bytes). A wrong position, block or head lands far
 * outside (blocks of 16, which the WebGPU kernel gets wrong past 32 tokens, measured 0.07 to 0.15).
 */
const LOGPROB_TOLERANCE = 4e-2;
/** A greedy choice is asserted only where the reference's best two logits are further apart than this. */
const CLEAR_MARGIN = 2 * LOGPROB_TOLERANCE;
/** int4 against the reference on modelled int4 weights: loose, as in reference-verification.test.ts. */
const INT4_TOLERANCE = 0.1;

let root: string;
let fp16Dir: string;
let int4Dir: string;
let hostDir: string;
let runner: DeviceRunner;
let reference: ReferencePhi3;

const execFileAsync = promisify(execFile);
const convert = (from: string, out: string, ...flags: string[]) =>
  execFileAsync(process.execPath, ["--import", "tsx", CONVERT, "--from", from, "--out", out, ...flags], { cwd: REPO_ROOT });

beforeAll(async () => {
  await ensureVulkanDevice();
  root = await mkdtemp(join(tmpdir(), "device-runner-"));
  const checkpoint = join(root, "hf-bf16");
  await writeRandomHfCheckpoint(checkpoint, { config, seed: 42, dtype: "BF16" });
  fp16Dir = join(root, "fp16-device");
  int4Dir = join(root, "int4-device");
  hostDir = join(root, "fp32-host");
  await Promise.all([
    convert(checkpoint, fp16Dir, "--dtype", "fp16", "--layout", "device"),
    convert(checkpoint, int4Dir, "--dtype", "int4", "--layout", "device"),
    convert(checkpoint, hostDir, "--dtype", "fp32"),
  ]);
  runner = await DeviceRunner.load({ modelDir: fp16Dir, numBlocks: NUM_BLOCKS, blockSize: BLOCK_SIZE });
  reference = await ReferencePhi3.fromSafetensorsDir(checkpoint, config);
}, 300_000);

afterAll(async () => {
  await runner?.release();
  if (root) await rm(root, { recursive: true, force: true });
});

/** Distinct block ids in a scrambled order, so block tables are not contiguous runs. */
function scrambledBlocks(seed: number): number[] {
  const random = seededUniform(seed);
  const ids = Array.from({ length: NUM_BLOCKS }, (_, i) => i);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  return ids;
}

function randomTokens(n: number, seed: number): number[] {
  const random = seededUniform(seed);
  return Array.from({ length: n }, () => Math.floor(random() * V));
}

function logSumExp(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/** Row r's ranked head vs the reference logits: the worst logprob difference over its first `n` candidates, and the greedy check. */
function compareRow(ranked: RankedRows, r: number, ref: Float64Array, n = 8): { chosen: number; worst: number; greedy: number; refBest: number; margin: number } {
  const lse = logSumExp(ref);
  let worst = 0;
  let chosen = 0;
  for (let i = 0; i < n; i++) {
    const id = ranked.ids[r * ranked.k + i];
    const logprob = ranked.values[r * ranked.k + i] - ranked.logSumExp[r];
    const err = Math.abs(logprob - (ref[id] - lse));
    if (i === 0) chosen = err;
    worst = Math.max(worst, err);
  }
  let best = 0;
  let second = -1;
  for (let i = 1; i < ref.length; i++) {
    if (ref[i] > ref[best]) {
      second = best;
      best = i;
    } else if (second < 0 || ref[i] > ref[second]) second = i;
  }
  return { chosen, worst, greedy: ranked.ids[r * ranked.k], refBest: best, margin: ref[best] - ref[second] };
}

describe("device layout (WebGPU, fp16, paged KV on the device) vs float64 reference", { timeout: DEVICE_TEST_TIMEOUT }, () => {
  it("prefill, then 30 greedy decode steps in separate runs over a scrambled block table", async () => {
    const prompt = randomTokens(45, 7);
    const table = scrambledBlocks(1).slice(0, 3); // 45 + 30 tokens need 3 blocks of 32
    const refCache = reference.newCache();
    let refLogits = reference.forward(refCache, prompt);
    let ranked = await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: table }]);
    let pastLen = prompt.length;
    let worst = 0;
    let chosen = 0;
    let asserted = 0;
    for (let step = 0; step <= 30; step++) {
      const cmp = compareRow(ranked, 0, refLogits);
      worst = Math.max(worst, cmp.worst);
      chosen = Math.max(chosen, cmp.chosen);
      if (cmp.margin > CLEAR_MARGIN) {
        expect(cmp.greedy, `step ${step}`).toBe(cmp.refBest);
        asserted++;
      }
      if (step === 30) break;
      const next = cmp.greedy; // both follow the device's choice, so a near tie cannot desynchronise them
      ranked = await runner.forward([{ tokens: [next], pastLen, blockTable: table }]);
      refLogits = reference.forward(refCache, [next]);
      pastLen++;
    }
    console.log(`device fp16: worst logprob error ${chosen.toExponential(2)} (greedy token), ${worst.toExponential(2)} (top 8) over 31 positions; greedy asserted at ${asserted}`);
    expect(chosen).toBeLessThan(LOGPROB_TOLERANCE);
    expect(worst).toBeLessThan(LOGPROB_TOLERANCE);
    expect(asserted).toBeGreaterThan(15);
  });

  it("a ragged batch (prefill chunks and decodes) gives each row what it gets alone", async () => {
    const blocks = scrambledBlocks(2);
    const a = randomTokens(70, 11);
    const b = randomTokens(5, 12);
    const c = randomTokens(41, 13);
    const tableA = blocks.slice(0, 3);
    const tableB = blocks.slice(3, 4);
    const tableC = blocks.slice(4, 6);
    // First the rows' pasts, in separate runs: a has 69 cached, b has 5, c has 30.
    await runner.forward([{ tokens: a.slice(0, 69), pastLen: 0, blockTable: tableA }]);
    await runner.forward([{ tokens: b, pastLen: 0, blockTable: tableB }]);
    await runner.forward([{ tokens: c.slice(0, 30), pastLen: 0, blockTable: tableC }]);
    const rows: BatchRow[] = [
      { tokens: [a[69]], pastLen: 69, blockTable: tableA }, // decode
      { tokens: [7], pastLen: 5, blockTable: tableB }, // decode
      { tokens: c.slice(30), pastLen: 30, blockTable: tableC }, // a prefill chunk of 11 across a block boundary
    ];
    const together = await runner.forward(rows);
    expect(runner.lastStepStats.runs).toBe(1);
    const refs = [reference.recompute(a), reference.recompute([...b, 7]), reference.recompute(c)];
    for (let r = 0; r < rows.length; r++) {
      const cmp = compareRow(together, r, refs[r]);
      expect(cmp.chosen, `row ${r}`).toBeLessThan(LOGPROB_TOLERANCE);
      expect(cmp.worst, `row ${r}`).toBeLessThan(LOGPROB_TOLERANCE);
      if (cmp.margin > CLEAR_MARGIN) expect(cmp.greedy, `row ${r}`).toBe(cmp.refBest);
    }
    // Whole rows from the device: their best ids and log-sum-exp agree with the ranked head.
    const full = await runner.fullLogits([2, 0]);
    expect(full.length).toBe(2 * V);
    for (const [i, r] of [[0, 2], [1, 0]] as const) {
      const row = full.subarray(i * V, (i + 1) * V);
      expect(row[together.ids[r * together.k]]).toBe(together.values[r * together.k]);
      expect(Math.abs(logSumExp(row) - together.logSumExp[r])).toBeLessThan(1e-3);
      let best = 0;
      for (let t = 1; t < V; t++) if (row[t] > row[best]) best = t;
      expect(best).toBe(together.ids[r * together.k]);
    }
  });

  it("a run whose past covers blocks another sequence wrote leaves those blocks untouched; bytes per step are counted", async () => {
    const blocks = scrambledBlocks(3);
    const prefix = randomTokens(64, 21); // two full blocks, shared
    const shared = blocks.slice(0, 2);
    await runner.forward([{ tokens: prefix, pastLen: 0, blockTable: [...shared, blocks[2]] }]);
    const before = await Promise.all([0, 1].map((l) => runner.readBlocks(l, shared)));
    // A second sequence reuses the two blocks as its cached prefix (a prefix-cache hit) and computes 3 tokens of its own.
    const own = [...shared, blocks[3]];
    const ranked = await runner.forward([{ tokens: [5, 6, 7], pastLen: 64, blockTable: own }]);
    const after = await Promise.all([0, 1].map((l) => runner.readBlocks(l, shared)));
    for (let l = 0; l < 2; l++) {
      expect(Buffer.from(after[l].key.buffer).equals(Buffer.from(before[l].key.buffer))).toBe(true);
      expect(Buffer.from(after[l].value.buffer).equals(Buffer.from(before[l].value.buffer))).toBe(true);
    }
    // The new tokens went into the sequence's own block, and attend to the shared prefix.
    const ownBlock = await runner.readBlocks(0, [blocks[3]]);
    const rowHalves = config.numKvHeads * config.headDim;
    expect(ownBlock.key.subarray(0, 3 * rowHalves).some((h) => h !== 0)).toBe(true);
    const cmp = compareRow(ranked, 0, reference.recompute([...prefix, 5, 6, 7]));
    expect(cmp.chosen).toBeLessThan(LOGPROB_TOLERANCE);
    expect(cmp.worst).toBeLessThan(LOGPROB_TOLERANCE);
    // Up: 3 token ids (int64), cumulative lengths (2 × int32), past length, a 3-wide block table, one sample index (int64), 2 bounds.
    expect(runner.lastStepStats.bytesToDevice).toBe(3 * 8 + 2 * 4 + 4 + 3 * 4 + 8 + 2 * 4);
    // Down: 64 values and ids per row and one log-sum-exp.
    expect(runner.lastStepStats.bytesFromDevice).toBe(64 * 4 + 64 * 4 + 4);
  });

  it("int4 (MatMulNBits, fp16 scales) decodes with logprobs near the reference on the same rounded weights", async () => {
    const int4 = await DeviceRunner.load({ modelDir: int4Dir, numBlocks: 8, blockSize: BLOCK_SIZE });
    try {
      const rounded = await ReferencePhi3.fromSafetensorsDir(join(root, "hf-bf16"), config, INT4_WEIGHTS);
      const prompt = randomTokens(12, 31);
      const ranked = await int4.forward([{ tokens: prompt, pastLen: 0, blockTable: [5] }]);
      const next = await int4.forward([{ tokens: [ranked.ids[0]], pastLen: 12, blockTable: [5] }]);
      const cache = rounded.newCache();
      // bf16 weights often sit exactly halfway between two int4 codes, and which way such a tie rounds is the
      // quantizer's choice (see reference-verification.test.ts); the scales are fp16 here (the WebGPU kernel's type).
      expect(compareRow(ranked, 0, rounded.forward(cache, prompt)).worst).toBeLessThan(INT4_TOLERANCE);
      expect(compareRow(next, 0, rounded.forward(cache, [ranked.ids[0]])).worst).toBeLessThan(INT4_TOLERANCE);
    } finally {
      await int4.release();
    }
  });

  it("ranks Phi-4's 100,352-token vocabulary on the device exactly as a full sort does, and run() hands the sampler what each row needs", async () => {
    const dir = join(root, "tiny-device");
    const c = tinyConfig();
    await writeModel(c, new RandomWeights(c, 5), { outDir: dir, dtype: "fp16", layout: "device" });
    const big = await DeviceRunner.load({ modelDir: dir, numBlocks: 8, blockSize: BLOCK_SIZE });
    try {
      const V = c.vocabSize;
      const rows: BatchRow[] = [
        { tokens: [1, 2, 3], pastLen: 0, blockTable: [0], needs: LogitsNeed.Candidates },
        { tokens: [4, 5], pastLen: 0, blockTable: [1], needs: LogitsNeed.FullRow },
        { tokens: [6], pastLen: 0, blockTable: [2], needs: LogitsNeed.None },
      ];
      const out = await big.run(rows);
      const ranked = out.candidates!;
      expect(big.lastStepStats.bytesFromDevice).toBe(3 * (64 * 8 + 4) + V * 4); // ranked rows + the one whole row
      const full = await big.fullLogits([0, 1, 2]);
      for (let r = 0; r < 3; r++) {
        const row = full.subarray(r * V, (r + 1) * V);
        const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, 64);
        expect(Array.from(ranked.ids.subarray(r * 64, r * 64 + 64))).toEqual(order);
        expect(Array.from(ranked.values.subarray(r * 64, r * 64 + 64))).toEqual(order.map((i) => row[i]));
        expect(Math.abs(ranked.logSumExp![r] - logSumExp(row))).toBeLessThan(1e-3);
      }
      const logits = out.logits!;
      // FullRow: the whole row; Candidates: the 64 ranked logits at their ids, -Infinity elsewhere; None: nothing.
      expect(logits.subarray(V, 2 * V)).toEqual(full.subarray(V, 2 * V));
      const candidateRow = logits.subarray(0, V);
      expect(candidateRow.filter((x) => x !== -Infinity).length).toBe(64);
      for (let i = 0; i < 64; i++) expect(candidateRow[ranked.ids[i]]).toBe(ranked.values[i]);
      expect(logits.subarray(2 * V, 3 * V).every((x) => x === -Infinity)).toBe(true);
      // The next step clears what the last one wrote.
      const again = await big.run([{ tokens: [7], pastLen: 2, blockTable: [1], needs: LogitsNeed.Candidates }]);
      expect(again.logits!.filter((x) => x !== -Infinity).length).toBe(64);
    } finally {
      await big.release();
    }
  });

  it("each layout refuses the other's provider with one line", async () => {
    await expect(DeviceRunner.load({ modelDir: hostDir, numBlocks: 4, blockSize: BLOCK_SIZE })).rejects.toThrow(/holds the host layout; ORT_EP=webgpu serves only the device layout/);
    await expect(ModelRunner.load({ modelDir: fp16Dir, numBlocks: 4, blockSize: BLOCK_SIZE, ep: "cpu" })).rejects.toThrow(/holds the device layout.*ORT_EP=webgpu/);
    await expect(DeviceRunner.load({ modelDir: fp16Dir, numBlocks: 4, blockSize: 16 })).rejects.toThrow(/power of two ≥ 32/);
  });
});
