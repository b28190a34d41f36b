/**
 * Drawing without top_k from a device's 64 candidates (candidate-draw.ts) is an inverse CDF over the whole
 * row's distribution: over a stratified grid of N uniforms each token is drawn N·p ± 1 times, p its
 * probability at the row's temperature (after min_p / top_p, as the host sampler draws it); the tail is
 * reached exactly with the tail's probability, and only then is the whole row read.
 */
import { describe, expect, it } from "vitest";
import { seededUniform } from "../../../shared/seeded-uniform.ts";
import type { PreselectedCandidates } from "../../runner/step-runner.ts";
import { CandidateDraw, drawsFromCandidatesOrTail, FULL_ROW, TAIL } from "../candidate-draw.ts";
import { Sampler } from "../sampler.ts";
import { DEFAULT_SAMPLING, type SamplingParams } from "../sampling-params.ts";

const V = 4096;
const K = 64;
const N = 20_000;

/** A row ranked as the device ranks it (float64 log-sum-exps, as exact as a device's float32 allows). */
function candidatesOf(row: Float32Array, temperature: number): PreselectedCandidates {
  const ids = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, K);
  const lse = (invT: number) => {
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x * invT);
    let s = 0;
    for (const x of row) s += Math.exp(x * invT - max);
    return max + Math.log(s);
  };
  return {
    k: K,
    values: Float32Array.from(ids, (i) => row[i]),
    ids: Int32Array.from(ids),
    logSumExp: Float64Array.of(lse(1)),
    scaledLogSumExp: Float64Array.of(lse(1 / temperature)),
  };
}

/** A long tail of logits in [-spread, 0], and `head` tokens (ids scattered) at lift + i/8. */
function makeRow(seed: number, spread: number, head = 0, lift = 0): Float32Array {
  const random = seededUniform(seed);
  const row = Float32Array.from({ length: V }, () => (random() - 1) * spread);
  for (let i = 0; i < head; i++) row[(i * 97 + 5) % V] = lift + i / 8;
  return row;
}

/** Probabilities at temperature T over the whole row. */
function probabilities(row: Float32Array, T: number): Float64Array {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  const p = Float64Array.from(row, (x) => Math.exp((x - max) / T));
  const z = p.reduce((a, b) => a + b, 0);
  return p.map((x) => x / z);
}

function drawAll(row: Float32Array, params: SamplingParams): { counts: Float64Array; tail: number; full: number } {
  const draw = new CandidateDraw(V);
  const c = candidatesOf(row, params.temperature);
  const counts = new Float64Array(V);
  let tail = 0;
  let full = 0;
  const host = new Sampler(V);
  for (let j = 0; j < N; j++) {
    const u = (j + 0.5) / N;
    let token = draw.tryCandidates(c, 0, params, u);
    if (token === TAIL) {
      tail++;
      token = draw.drawTail(row, 0, c, 0, params, u);
    } else if (token === FULL_ROW) {
      full++;
      token = host.draw(row, 0, params, u).token;
    }
    counts[token]++;
  }
  return { counts, tail, full };
}

describe("drawing from device candidates, the tail only when u lands there", () => {
  it("temperature alone: every token N·p ± 1 times, the tail read exactly as often as its mass", () => {
    for (const [seed, T] of [[1, 1], [2, 0.7], [3, 1.6]] as const) {
      const row = makeRow(seed, 9, 20, 0.5);
      const params = { ...DEFAULT_SAMPLING, temperature: T };
      expect(drawsFromCandidatesOrTail(params, K, V)).toBe(true);
      const p = probabilities(row, T);
      const { counts, tail, full } = drawAll(row, params);
      expect(full).toBe(0);
      for (let i = 0; i < V; i++) expect(Math.abs(counts[i] - N * p[i]), `token ${i}, T ${T}`).toBeLessThanOrEqual(1.01);
      let head = 0;
      for (let i = 0; i < 20; i++) head += p[(i * 97 + 5) % V];
      expect(head).toBeGreaterThan(0.05);
      expect(head).toBeLessThan(0.95); // the tail matters in this row
      expect(Math.abs(tail - N * (1 - head))).toBeLessThanOrEqual(1.01);
    }
  });

  it("top_p and min_p decided from the candidates draw what the host sampler draws; undecidable rows go whole", () => {
    const peaked = makeRow(4, 6, 40, 9); // most mass in a head of 40 tokens: top_p 0.9 and min_p 0.05 are decidable
    const flat = makeRow(5, 3, 3, 0.5); // a small head, the mass spread over the vocabulary: neither is
    const host = new Sampler(V);
    for (const extra of [{ topP: 0.9 }, { minP: 0.05 }, { topP: 0.8, minP: 0.01 }]) {
      const params = { ...DEFAULT_SAMPLING, temperature: 0.9, ...extra };
      const { counts, tail, full } = drawAll(peaked, params);
      expect(tail).toBe(0);
      expect(full, JSON.stringify(extra)).toBe(0);
      const reference = new Float64Array(V);
      for (let j = 0; j < N; j++) reference[host.draw(peaked, 0, params, (j + 0.5) / N).token]++;
      // two inverse CDFs of one distribution, in different orders: each count within 2 of the other
      for (let i = 0; i < V; i++) expect(Math.abs(counts[i] - reference[i]), `token ${i} ${JSON.stringify(extra)}`).toBeLessThanOrEqual(2);
      const { full: fullFlat } = drawAll(flat, params);
      expect(fullFlat, `flat ${JSON.stringify(extra)}`).toBe(N);
    }
  });

  it("a row without a clear gap among its candidates (a flat row) goes whole whatever u is", () => {
    const params = { ...DEFAULT_SAMPLING, temperature: 1 };
    expect(drawAll(makeRow(6, 9), params).full).toBe(N);
  });

  it("greedy and top_k rows are not drawn this way (they draw from candidates as before)", () => {
    expect(drawsFromCandidatesOrTail({ ...DEFAULT_SAMPLING, temperature: 0 }, K, V)).toBe(false);
    expect(drawsFromCandidatesOrTail({ ...DEFAULT_SAMPLING, topK: 100 }, K, V)).toBe(false);
    expect(drawsFromCandidatesOrTail({ ...DEFAULT_SAMPLING, logprobs: true, topLogprobs: 20 }, K, V)).toBe(true);
  });
});
