import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VOCAB_SIZE } from "../../../shared/limits.ts";
import { uniform } from "../prng.ts";
import { LogitsPreselector, PRESELECT_K } from "../logits-preselector.ts";
import { applyBiasAndPenalties } from "../logit-adjustments.ts";
import { drawsFromCandidates, Sampler } from "../sampler.ts";
import { DEFAULT_SAMPLING, type SamplingParams } from "../sampling-params.ts";
import { TokenCounts } from "../token-counts.ts";
import { sampleRow } from "./sample-row.ts";

const V = VOCAB_SIZE;
const ROWS = 12;
let preselector: LogitsPreselector;

beforeAll(async () => {
  preselector = await LogitsPreselector.create(V, 2);
});
afterAll(async () => {
  await preselector.release();
});

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4_294_967_296;
  };
}

/**
 * Rows of four shapes: a language model's (broad body, a few strong tokens), a peaked one, one quantised to
 * steps of 1/4 (thousands of exact ties, ±0 among them), and one with NaNs scattered through it.
 */
function batch(seed: number): Float32Array {
  const rand = lcg(seed);
  const out = new Float32Array(ROWS * V);
  for (let r = 0; r < ROWS; r++) {
    const row = out.subarray(r * V, (r + 1) * V);
    const shape = r % 4;
    for (let i = 0; i < V; i++) row[i] = (rand() + rand() + rand() - 1.5) * 4;
    if (shape === 0 || shape === 3) for (let j = 0; j < 30; j++) row[Math.floor(rand() * V)] = 8 + rand() * 6;
    if (shape === 1) row[Math.floor(rand() * V)] = 30;
    if (shape === 2) for (let i = 0; i < V; i++) row[i] = Math.round(row[i] * 4) / 4 - 2 + (i % 7 === 0 ? -0 : 0);
    if (shape === 3) for (let j = 0; j < 50; j++) row[Math.floor(rand() * V)] = NaN;
  }
  return out;
}

const bias: Record<number, number> = { 7: 25, 100265: -100, 100257: -100, 12345: 6.5 };
const paramSets: SamplingParams[] = [
  { ...DEFAULT_SAMPLING, temperature: 0 },
  { ...DEFAULT_SAMPLING, temperature: 0, logprobs: true, topLogprobs: 5 },
  { ...DEFAULT_SAMPLING, temperature: 0.7, topK: 1, logprobs: true, topLogprobs: 20 },
  { ...DEFAULT_SAMPLING, topK: 5 },
  { ...DEFAULT_SAMPLING, temperature: 0.8, topK: 50 },
  { ...DEFAULT_SAMPLING, temperature: 1.3, topK: 64, logprobs: true, topLogprobs: 3 },
  { ...DEFAULT_SAMPLING, temperature: 0.6, topK: 50, topP: 0.9 },
  { ...DEFAULT_SAMPLING, temperature: 1, topK: 64, topP: 0.5, minP: 0.05, logprobs: true, topLogprobs: 0 },
  { ...DEFAULT_SAMPLING, temperature: 0.9, topK: 5, minP: 0.2, logitBias: bias, logprobs: true, topLogprobs: 8 },
  {
    ...DEFAULT_SAMPLING, temperature: 0.8, topK: 50, topP: 0.9, minP: 0.05, presencePenalty: 0.5, frequencyPenalty: 0.5,
    repetitionPenalty: 1.1, logitBias: bias, logprobs: true, topLogprobs: 5,
  },
  { ...DEFAULT_SAMPLING, temperature: 0, logitBias: bias, repetitionPenalty: 1.3 },
];

function history(seed: number): TokenCounts {
  const counts = new TokenCounts(Array.from({ length: 300 }, (_, i) => (i * 7919 + seed) % V));
  for (let i = 0; i < 200; i++) counts.add((i * 104729 + seed) % 500);
  return counts;
}

describe("LogitsPreselector", () => {
  it("ranks each row's K highest logits best first, ties lower id first", async () => {
    const logits = new Float32Array(2 * V).fill(-1);
    logits.fill(2, V + 1000, V + 1100); // row 1: 100 tied tokens at the top
    logits[V + 99_000] = 3;
    const c = await preselector.run(logits, 2, false);
    expect(c.k).toBe(PRESELECT_K);
    expect(Array.from(c.ids.subarray(0, 4))).toEqual([0, 1, 2, 3]);
    expect(c.ids[1 * c.k]).toBe(99_000);
    expect(Array.from(c.ids.subarray(c.k + 1, c.k + 4))).toEqual([1000, 1001, 1002]);
    expect(c.ids[2 * c.k - 1]).toBe(1000 + PRESELECT_K - 2);
    expect(c.values[c.k]).toBe(3);
    expect(c.logSumExp).toBeNull();
  });

  it("gives each row's log Σ exp in double precision", async () => {
    const logits = batch(5);
    const c = await preselector.run(logits, 3, true);
    for (let r = 0; r < 3; r++) {
      const row = logits.subarray(r * V, (r + 1) * V);
      const max = row.reduce((m, x) => Math.max(m, x), -Infinity);
      const z = row.reduce((s, x) => s + Math.exp(x - max), 0);
      expect(Math.abs(c.logSumExp![r] - (max + Math.log(z)))).toBeLessThan(1e-7);
    }
  });
});

describe("Sampler.draw with preselected candidates", () => {
  it("picks the same token with the same logprobs as the full-row sampler", async () => {
    const reference = new Sampler(V);
    const fast = new Sampler(V);
    let compared = 0;
    for (let b = 0; b < 4; b++) {
      const original = batch(100 + b);
      for (const withLse of [false, true]) {
        for (let shift = 0; shift < paramSets.length; shift += 4) {
          const logits = original.slice();
          const rowParams = Array.from({ length: ROWS }, (_, r) => paramSets[(r + shift + b) % paramSets.length]);
          for (let r = 0; r < ROWS; r++) applyBiasAndPenalties(logits, r * V, V, rowParams[r], history(r));
          const candidates = await preselector.run(logits, ROWS, withLse);
          for (let r = 0; r < ROWS; r++) {
            const p = rowParams[r];
            const u = uniform(BigInt(b * 1000 + shift), r, withLse ? 1 : 0);
            const want = sampleRow(reference, original.slice(r * V, (r + 1) * V), 0, p, history(r), u);
            const got = fast.draw(logits, r * V, p, u, drawsFromCandidates(p, candidates.k, V) ? candidates : null, r);
            expect(got.token).toBe(want.token);
            if (p.logprobs) {
              expect(Math.abs(got.logprob - want.logprob)).toBeLessThan(1e-6);
              expect(got.top!.map((t) => t.token)).toEqual(want.top!.map((t) => t.token));
              for (let i = 0; i < want.top!.length; i++) expect(Math.abs(got.top![i].logprob - want.top![i].logprob)).toBeLessThan(1e-6);
            } else {
              expect(got.top).toBeNull();
            }
            compared++;
          }
        }
      }
    }
    expect(compared).toBe(4 * 2 * 3 * ROWS);
  });

  it("reads the candidates instead of rescanning the row", async () => {
    const logits = batch(9).subarray(0, V).slice();
    const sampler = new Sampler(V);
    const p: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 0 };
    applyBiasAndPenalties(logits, 0, V, p, history(0));
    const candidates = await preselector.run(logits, 1, false);
    const best = candidates.ids[0];
    logits[(best + 1) % V] = 1e6; // written after the ranking: only a full scan would see it
    expect(sampler.draw(logits, 0, p, 0.5, candidates, 0).token).toBe(best);
    expect(sampler.draw(logits, 0, p, 0.5, null, 0).token).toBe((best + 1) % V);
  });

  it("falls back to the full scan when a candidate is ±0 (onnxruntime ranks -0 and +0 as equal)", async () => {
    const logits = new Float32Array(V).fill(-5);
    logits[10] = -0;
    logits[20] = 0;
    const p: SamplingParams = { ...DEFAULT_SAMPLING, topK: 2, temperature: 1, logprobs: true, topLogprobs: 2 };
    const sampler = new Sampler(V);
    const want = sampleRow(sampler, logits.slice(), 0, p, history(0), 0.25);
    const candidates = await preselector.run(logits, 1, true);
    const got = sampler.draw(logits, 0, p, 0.25, candidates, 0);
    expect(got.top!.map((t) => t.token)).toEqual([20, 10]);
    expect(got).toEqual(want);
  });

  it("is used for greedy and top_k ≤ K only", () => {
    expect(drawsFromCandidates({ ...DEFAULT_SAMPLING, temperature: 0 }, 64, V)).toBe(true);
    expect(drawsFromCandidates({ ...DEFAULT_SAMPLING, topK: 1 }, 64, V)).toBe(true);
    expect(drawsFromCandidates({ ...DEFAULT_SAMPLING, topK: 64, topP: 0.9 }, 64, V)).toBe(true);
    expect(drawsFromCandidates({ ...DEFAULT_SAMPLING, topK: 65 }, 64, V)).toBe(false);
    expect(drawsFromCandidates({ ...DEFAULT_SAMPLING, topP: 0.9 }, 64, V)).toBe(false);
    expect(drawsFromCandidates({ ...DEFAULT_SAMPLING }, 64, V)).toBe(false);
  });
});
