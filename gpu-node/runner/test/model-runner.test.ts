import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ModelRunner } from "../model-runner.ts";
import type { BatchRow } from "../step-runner.ts";
import { argmax, fullRecomputeLogits } from "./full-recompute.ts";
import { RandomWeights } from "../../model/random-weights.ts";
import { writeModel } from "../../model/write-model.ts";
import { tinyConfig } from "../../model/tiny-model.ts";

const BLOCK = 16;
const config = tinyConfig();
let dir: string;
let modelDir: string;
let runner: ModelRunner;

/** Deterministic pseudo-random token ids (avoids special ids only by chance; any id is valid input). */
function tokens(n: number, salt: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + salt * 104729 + 17) % 100_000);
}

/** Blocks [first, first+count). */
function blocks(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function row(logits: Float32Array, r: number): Float32Array {
  return logits.subarray(r * config.vocabSize, (r + 1) * config.vocabSize);
}

const TOL = 1e-5; // logits are O(1); fp32 summation-order noise is ~1e-7

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "runner-test-"));
  modelDir = path.join(dir, "tiny");
  await writeModel(config, new RandomWeights(config, 7), { outDir: modelDir, dtype: "fp32" });
  runner = await ModelRunner.load({ modelDir, numBlocks: 256, blockSize: BLOCK, intraOpThreads: 2 });
});

afterAll(async () => {
  await runner?.release();
  await rm(dir, { recursive: true, force: true });
});

describe("ModelRunner", () => {
  it("exposes the model's config, dtype and cache geometry", () => {
    expect(runner.config.vocabSize).toBe(100_352);
    expect(runner.config.numLayers).toBe(2);
    expect(runner.dtype).toBe("fp32");
    expect(runner.numBlocks).toBe(256);
    expect(runner.blockSize).toBe(BLOCK);
    // K+V × layers × kv heads × block × head dim × 4 bytes
    expect(runner.kvBytesPerBlock).toBe(2 * 2 * 2 * BLOCK * 16 * 4);
  });

  it("greedy generation of 64 tokens with the KV cache equals greedy generation by full recompute", async () => {
    const prompt = tokens(12, 1);
    const table = blocks(0, 6); // room for 12 + 64 tokens
    const scratch = blocks(100, 6);
    const cached: number[] = [];
    let logits = await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: table }]);
    const seq = [...prompt];
    for (let step = 0; step < 64; step++) {
      const reference = await fullRecomputeLogits(runner, seq, scratch);
      expect(maxAbsDiff(logits, reference)).toBeLessThan(TOL);
      const next = argmax(logits);
      expect(next).toBe(argmax(reference));
      cached.push(next);
      seq.push(next);
      if (step < 63) logits = await runner.forward([{ tokens: [next], pastLen: seq.length - 1, blockTable: table }]);
    }
    expect(cached).toHaveLength(64);
    // The model is random but not degenerate: it does not emit one token forever.
    expect(new Set(cached).size).toBeGreaterThan(1);
  });

  it("a ragged batch of 8 rows gives each row the logits it gets alone, and stores the same K/V", async () => {
    const shapes = [
      { past: 0, fresh: 5 },
      { past: 1, fresh: 1 },
      { past: 15, fresh: 1 },
      { past: 16, fresh: 3 },
      { past: 17, fresh: 1 },
      { past: 33, fresh: 16 },
      { past: 40, fresh: 1 },
      { past: 3, fresh: 9 },
    ];
    const solo = await ModelRunner.load({ modelDir, numBlocks: 256, blockSize: BLOCK, intraOpThreads: 2 });
    try {
      const rows: BatchRow[] = shapes.map((s, r) => {
        const all = tokens(s.past + s.fresh + 1, 10 + r);
        return { tokens: all.slice(s.past, s.past + s.fresh), pastLen: s.past, blockTable: blocks(10 + r * 5, 5) };
      });
      const pasts = shapes.map((s, r) => tokens(s.past + s.fresh + 1, 10 + r).slice(0, s.past));
      // Both runners hold the same past for every row.
      for (const [r, past] of pasts.entries()) {
        if (past.length === 0) continue;
        await runner.forward([{ tokens: past, pastLen: 0, blockTable: rows[r].blockTable }]);
        await solo.forward([{ tokens: past, pastLen: 0, blockTable: rows[r].blockTable }]);
      }
      const batched = await runner.forward(rows);
      // Decode rows together; prefill rows of 16, 9, then 5 and 3 tokens padded together (bounded padding).
      expect(runner.lastStepStats.runs).toBe(4);
      for (const [r, rowIn] of rows.entries()) {
        const alone = await solo.forward([rowIn]);
        expect(maxAbsDiff(row(batched, r), alone), `row ${r}`).toBeLessThan(TOL);
      }
      // The K/V the batch wrote serve the next step exactly as the solo runs' K/V do.
      const nextRows: BatchRow[] = rows.map((rw, r) => ({ tokens: [argmax(row(batched, r))], pastLen: rw.pastLen + rw.tokens.length, blockTable: rw.blockTable }));
      const nextBatched = await runner.forward(nextRows);
      expect(runner.lastStepStats.runs).toBe(1);
      for (const [r, rowIn] of nextRows.entries()) {
        expect(maxAbsDiff(row(nextBatched, r), await solo.forward([rowIn])), `row ${r} next step`).toBeLessThan(TOL);
      }
    } finally {
      await solo.release();
    }
  });

  it("prefill in chunks equals one-shot prefill, and the following decode step agrees", async () => {
    const prompt = tokens(50, 3);
    const oneShotTable = blocks(60, 4);
    const chunkTable = blocks(70, 4);
    const oneShot = await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: oneShotTable }]);
    let chunked: Float32Array = new Float32Array();
    for (const [start, end] of [[0, 16], [16, 21], [21, 50]]) {
      chunked = await runner.forward([{ tokens: prompt.slice(start, end), pastLen: start, blockTable: chunkTable }]);
    }
    expect(maxAbsDiff(oneShot, chunked)).toBeLessThan(TOL);
    const next = argmax(oneShot);
    const a = await runner.forward([{ tokens: [next], pastLen: 50, blockTable: oneShotTable }]);
    const b = await runner.forward([{ tokens: [next], pastLen: 50, blockTable: chunkTable }]);
    expect(maxAbsDiff(a, b)).toBeLessThan(TOL);
  });

  it("a decode step fetches only the new K/V rows and the sampled logits", async () => {
    const rows: BatchRow[] = Array.from({ length: 4 }, (_, r) => ({ tokens: [5 + r], pastLen: 30, blockTable: blocks(140 + r * 3, 3) }));
    await runner.forward(rows);
    const { numLayers, numKvHeads, headDim, vocabSize } = config;
    expect(runner.lastStepStats.outputBytes).toBe(4 * (vocabSize + 2 * numLayers * numKvHeads * headDim) * 4);
    expect(runner.lastStepStats.sessionRunMs).toBeLessThanOrEqual(runner.lastStepStats.totalMs);
  });

  it("rejects rows it cannot run with a message naming the row", async () => {
    await expect(runner.forward([{ tokens: [1, 2, 3], pastLen: 30, blockTable: [1, 2] }])).rejects.toThrow(/row 0: block table has 2 blocks, 3 needed/);
    await expect(runner.forward([{ tokens: [1], pastLen: 0, blockTable: [256] }])).rejects.toThrow(/row 0: block id 256 outside/);
    await expect(runner.forward([{ tokens: [100_352], pastLen: 0, blockTable: [1] }])).rejects.toThrow(/row 0: token 100352 outside the vocabulary/);
    await expect(runner.forward([{ tokens: [], pastLen: 0, blockTable: [1] }])).rejects.toThrow(/row 0: no new tokens/);
    await expect(runner.forward([{ tokens: [1], pastLen: 16_384, blockTable: blocks(0, 256) }])).rejects.toThrow(/exceed the context length 16384/);
  });
});
