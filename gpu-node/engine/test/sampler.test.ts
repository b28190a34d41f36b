import { describe, expect, it } from "vitest";
import { VOCAB_SIZE } from "../../../shared/limits.ts";
import { uniform } from "../prng.ts";
import { expNonPositive } from "../fast-exp.ts";
import { Sampler } from "../sampler.ts";
import { DEFAULT_SAMPLING, type SamplingParams } from "../sampling-params.ts";
import { TokenCounts } from "../token-counts.ts";
import { sampleRow } from "./sample-row.ts";

const params = (p: Partial<SamplingParams> = {}): SamplingParams => ({ ...DEFAULT_SAMPLING, ...p });
const noHistory = () => new TokenCounts([]);

/** Seeded normal-ish logits shaped like a language model's: a broad body and a few strong candidates. */
function lmLogits(vocab: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4_294_967_296;
  };
  const row = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) row[i] = (rand() + rand() + rand() - 1.5) * 4;
  for (let j = 0; j < 30; j++) row[Math.floor(rand() * vocab)] = 8 + rand() * 6;
  return row;
}

/** Samples from a fresh copy of the row (the sampler writes into its row). */
function draw(sampler: Sampler, row: Float32Array, p: SamplingParams, u: number, counts = noHistory()) {
  return sampleRow(sampler, row.slice(), 0, p, counts, u);
}

/** Reference for the ranked paths: full sort by (logit desc, id asc), then min_p, top_k, top_p; returns u → token. */
function referenceRanked(row: Float32Array, p: SamplingParams): { keptIds: Set<number>; draw: (u: number) => number } {
  const ids = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
  const max = row[ids[0]];
  let kept = ids.map((id) => ({ id, w: expNonPositive((row[id] - max) / p.temperature) }));
  kept = kept.filter((c) => c.w >= p.minP && c.w > 0);
  if (p.topK > 0) kept = kept.slice(0, p.topK);
  if (p.topP < 1) {
    const total = kept.reduce((s, c) => s + c.w, 0);
    let above = 0;
    kept = kept.filter((c) => {
      const keep = above < p.topP * total;
      above += c.w;
      return keep;
    });
  }
  const sum = kept.reduce((s, c) => s + c.w, 0);
  const draw = (u: number) => {
    let cum = 0;
    for (const c of kept) {
      cum += c.w;
      if (cum > u * sum) return c.id;
    }
    return kept[kept.length - 1].id;
  };
  return { keptIds: new Set(kept.map((c) => c.id)), draw };
}

function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let z = 0;
  for (const x of row) z += Math.exp(x - max);
  return Float64Array.from(row, (x) => x - max - Math.log(z));
}

describe("fast exp", () => {
  it("matches Math.exp to 1e-13 relative on [-50, 0]", () => {
    let worst = 0;
    for (let i = 0; i <= 100_000; i++) {
      const d = -50 * (i / 100_000) * 0.999_999;
      worst = Math.max(worst, Math.abs(expNonPositive(d) / Math.exp(d) - 1));
    }
    expect(worst).toBeLessThan(1e-13);
    expect(expNonPositive(0)).toBe(1);
    expect(expNonPositive(-60)).toBe(0);
  });
});

describe("greedy", () => {
  const sampler = new Sampler(VOCAB_SIZE);
  const row = lmLogits(VOCAB_SIZE, 1);
  let argmax = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[argmax]) argmax = i;

  it("temperature 0 picks the highest logit whatever u is", () => {
    for (const u of [0, 0.3, 0.999]) expect(draw(sampler, row, params({ temperature: 0 }), u).token).toBe(argmax);
  });

  it("breaks ties toward the lowest id", () => {
    const tied = row.slice();
    tied[7] = tied[argmax];
    tied[VOCAB_SIZE - 1] = tied[argmax];
    expect(draw(sampler, tied, params({ temperature: 0 }), 0.5).token).toBe(Math.min(7, argmax));
    expect(draw(sampler, tied, params({ topK: 1, temperature: 1.5 }), 0.5).token).toBe(Math.min(7, argmax));
  });

  it("top_k = 1 equals greedy at any temperature and any u", () => {
    for (let seed = 2; seed < 7; seed++) {
      const r = lmLogits(VOCAB_SIZE, seed);
      const greedy = draw(sampler, r, params({ temperature: 0 }), 0).token;
      for (const temperature of [0.5, 1, 2]) {
        for (const u of [0.01, 0.5, 0.99]) expect(draw(sampler, r, params({ topK: 1, temperature }), u).token).toBe(greedy);
      }
    }
  });
});

describe("truncation on the full vocabulary agrees with a full-sort reference", () => {
  const sampler = new Sampler(VOCAB_SIZE);
  const row = lmLogits(VOCAB_SIZE, 11);
  // With top_k the candidates are drawn in rank order, as in the reference: the same u gives the same token.
  it.each<Partial<SamplingParams>>([
    { topK: 50, temperature: 0.7 },
    { topK: 40, topP: 0.8, temperature: 0.9 },
    { topK: 999, minP: 0.2 },
    { topK: 999, topP: 0.95, temperature: 1.6 },
  ])("token for token: %j", (p) => {
    const sp = params(p);
    const reference = referenceRanked(row, sp);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const u = uniform(99n, 0, i);
      const token = draw(sampler, row, sp, u).token;
      expect(token).toBe(reference.draw(u));
      seen.add(token);
    }
    expect(seen.size).toBeGreaterThan(1);
  });

  // top_p alone draws the nucleus in another (id) order: same set, same distribution (checked on a grid below).
  it.each<Partial<SamplingParams>>([
    { topP: 0.9 },
    { topP: 0.5, minP: 0.05, temperature: 1.3 },
    { topP: 0.99, temperature: 2 },
    { topP: 0.3, temperature: 0.2 },
  ])("only nucleus tokens, and all of them reachable: %j", (p) => {
    const sp = params(p);
    const { keptIds } = referenceRanked(row, sp);
    const seen = new Set<number>();
    const draws = keptIds.size <= 50 ? 400 : 250;
    for (let i = 0; i < draws; i++) {
      const token = draw(sampler, row, sp, uniform(77n, 0, i)).token;
      expect(keptIds.has(token)).toBe(true);
      seen.add(token);
    }
    if (keptIds.size <= 50) expect(seen.size).toBe(keptIds.size);
    else expect(seen.size).toBeGreaterThan(Math.min(keptIds.size, draws) / 4);
  });
});

describe("distributions (u on an even grid: counts follow the probabilities to within one draw)", () => {
  const V = 64;
  const sampler = new Sampler(V);
  const row = lmLogits(V, 5);
  const N = 20_000;

  function counts(p: SamplingParams): Float64Array {
    const c = new Float64Array(V);
    for (let i = 0; i < N; i++) c[draw(sampler, row, p, (i + 0.5) / N).token]++;
    return c;
  }

  function softmax(x: Float32Array, temperature: number): Float64Array {
    const max = Math.max(...x);
    const w = Float64Array.from(x, (v) => Math.exp((v - max) / temperature));
    const z = w.reduce((a, b) => a + b, 0);
    return w.map((v) => v / z);
  }

  it("plain sampling follows softmax(logits / temperature)", () => {
    for (const temperature of [0.5, 1, 1.7]) {
      const c = counts(params({ temperature }));
      const p = softmax(row, temperature);
      for (let t = 0; t < V; t++) expect(Math.abs(c[t] - p[t] * N)).toBeLessThanOrEqual(1.5);
    }
  });

  it("min_p drops every token below min_p × the top probability, and renormalises the rest", () => {
    const p = softmax(row, 1);
    const top = Math.max(...p);
    const c = counts(params({ minP: 0.1 }));
    const keptMass = p.reduce((s, q) => s + (q >= 0.1 * top ? q : 0), 0);
    for (let t = 0; t < V; t++) {
      if (p[t] < 0.1 * top) expect(c[t]).toBe(0);
      else expect(Math.abs(c[t] - (p[t] / keptMass) * N)).toBeLessThanOrEqual(1.5);
    }
  });

  it("top_p keeps the smallest most-likely set whose mass reaches top_p", () => {
    const p = softmax(row, 1);
    const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a]);
    const nucleus = new Set<number>();
    let mass = 0;
    for (const t of order) {
      if (mass >= 0.6) break;
      nucleus.add(t);
      mass += p[t];
    }
    const c = counts(params({ topP: 0.6 }));
    for (let t = 0; t < V; t++) {
      if (!nucleus.has(t)) expect(c[t]).toBe(0);
      else expect(Math.abs(c[t] - (p[t] / mass) * N)).toBeLessThanOrEqual(1.5);
    }
    expect(nucleus.size).toBeGreaterThan(1);
    expect(nucleus.size).toBeLessThan(V);
  });

  it("top_p with min_p and temperature: the nucleus of the min_p-renormalised tempered distribution", () => {
    const temperature = 1.4;
    const p = softmax(row, temperature);
    const top = Math.max(...p);
    const order = Array.from(p.keys()).filter((t) => p[t] >= 0.02 * top).sort((a, b) => p[b] - p[a]);
    const total = order.reduce((s, t) => s + p[t], 0);
    const nucleus = new Set<number>();
    let mass = 0;
    for (const t of order) {
      if (mass >= 0.75 * total) break;
      nucleus.add(t);
      mass += p[t];
    }
    const c = counts(params({ topP: 0.75, minP: 0.02, temperature }));
    for (let t = 0; t < V; t++) {
      if (!nucleus.has(t)) expect(c[t]).toBe(0);
      else expect(Math.abs(c[t] - (p[t] / mass) * N)).toBeLessThanOrEqual(1.5);
    }
    expect(order.length).toBeLessThan(V);
    expect(nucleus.size).toBeLessThan(order.length);
  });

  it("top_k keeps exactly the k most likely tokens", () => {
    const c = counts(params({ topK: 5 }));
    const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a]);
    for (let r = 0; r < V; r++) {
      if (r < 5) expect(c[order[r]]).toBeGreaterThan(0);
      else expect(c[order[r]]).toBe(0);
    }
  });
});

describe("logit_bias and penalties", () => {
  const V = 1000;
  const sampler = new Sampler(V);
  const row = lmLogits(V, 21);
  const greedy = draw(sampler, row, params({ temperature: 0 }), 0).token;

  it("a bias of -100 bans a token, +100 forces one", () => {
    const banned = params({ temperature: 0, logitBias: { [greedy]: -100 } });
    expect(draw(sampler, row, banned, 0).token).not.toBe(greedy);
    const bannedSampling = params({ logitBias: { [greedy]: -100 } });
    for (let i = 0; i < 500; i++) expect(draw(sampler, row, bannedSampling, uniform(3n, 0, i)).token).not.toBe(greedy);
    let weakest = 0;
    for (let i = 1; i < V; i++) if (row[i] < row[weakest]) weakest = i;
    const forced = params({ temperature: 1.5, logitBias: { [weakest]: 100 } });
    for (let i = 0; i < 500; i++) expect(draw(sampler, row, forced, uniform(4n, 0, i)).token).toBe(weakest);
  });

  it("frequency and presence penalties subtract count·frequency + presence from generated tokens only", () => {
    const counts = new TokenCounts([1, 2, 3]);
    counts.add(10);
    counts.add(10);
    counts.add(11);
    const r = row.slice();
    sampleRow(sampler, r, 0, params({ frequencyPenalty: 0.5, presencePenalty: 0.25, temperature: 0 }), counts, 0);
    expect(r[10]).toBeCloseTo(row[10] - 2 * 0.5 - 0.25, 5);
    expect(r[11]).toBeCloseTo(row[11] - 0.5 - 0.25, 5);
    expect(r[1]).toBe(row[1]); // prompt tokens are not penalised by these
    expect(r[12]).toBe(row[12]);
  });

  it("a repeated token loses to its runner-up under frequency penalty (greedy)", () => {
    const counts = new TokenCounts([]);
    for (let i = 0; i < 20; i++) counts.add(greedy);
    expect(draw(sampler, row, params({ temperature: 0, frequencyPenalty: 2 }), 0, counts).token).not.toBe(greedy);
    expect(draw(sampler, row, params({ temperature: 0 }), 0, counts).token).toBe(greedy);
  });

  it("repetition_penalty divides positive and multiplies negative logits of prompt and output tokens", () => {
    const r0 = row.slice();
    r0[5] = 4;
    r0[6] = -3;
    r0[7] = 2;
    r0[8] = 2;
    const counts = new TokenCounts([5, 6, 5]);
    counts.add(7);
    const r = r0.slice();
    sampleRow(sampler, r, 0, params({ repetitionPenalty: 2, temperature: 0 }), counts, 0);
    expect([r[5], r[6], r[7], r[8]]).toEqual([2, -6, 1, 2]);
    // A token both in the prompt and generated is penalised once.
    counts.add(5);
    const r2 = r0.slice();
    sampleRow(sampler, r2, 0, params({ repetitionPenalty: 2, temperature: 0 }), counts, 0);
    expect(r2[5]).toBe(2);
    // A sibling choice shares the prompt but not the output.
    const sibling = counts.forSibling();
    const r3 = r0.slice();
    sampleRow(sampler, r3, 0, params({ repetitionPenalty: 2, temperature: 0 }), sibling, 0);
    expect([r3[5], r3[6], r3[7]]).toEqual([2, -6, 2]);
  });

  it("bias applies before the penalties (vLLM order)", () => {
    const counts = new TokenCounts([9]);
    const r = row.slice();
    r[9] = 1;
    sampleRow(sampler, r, 0, params({ logitBias: { 9: 3 }, repetitionPenalty: 2, temperature: 0 }), counts, 0);
    expect(r[9]).toBe(2); // (1 + 3) / 2, not 1 / 2 + 3
  });
});

describe("logprobs", () => {
  const sampler = new Sampler(VOCAB_SIZE);
  const row = lmLogits(VOCAB_SIZE, 31);

  // Each sampling path computes the normaliser and the top list its own way; all must agree.
  it.each<Partial<SamplingParams>>([
    { temperature: 0.6, topP: 0.9 },
    { topP: 0.9 },
    {},
    { topK: 50 },
    { topK: 3, temperature: 1.4 },
    { minP: 0.1 },
    { temperature: 0 },
  ])("the chosen token's logprob and the top list are the log-softmax of the biased logits: %j", (p) => {
    const sp = params({ ...p, logprobs: true, topLogprobs: 5, logitBias: { 42: 5 } });
    const biased = row.slice();
    biased[42] += 5;
    const expected = logSoftmax(biased);
    const order = Array.from(expected.keys()).sort((a, b) => expected[b] - expected[a] || a - b).slice(0, 5);
    for (let i = 0; i < 10; i++) {
      const r = draw(sampler, row, sp, uniform(8n, 0, i));
      expect(r.logprob).toBeCloseTo(expected[r.token], 9);
      expect(r.top!.map((t) => t.token)).toEqual(order);
      for (const t of r.top!) expect(t.logprob).toBeCloseTo(expected[t.token], 9);
    }
  });

  it("top_logprobs are the most likely tokens in order, their probabilities sum to at most 1", () => {
    const r = draw(sampler, row, params({ logprobs: true, topLogprobs: 20 }), 0.5);
    const expected = logSoftmax(row);
    const order = Array.from(expected.keys()).sort((a, b) => expected[b] - expected[a] || a - b).slice(0, 20);
    expect(r.top!.map((t) => t.token)).toEqual(order);
    for (const t of r.top!) expect(t.logprob).toBeCloseTo(expected[t.token], 9);
    expect(r.top!.reduce((s, t) => s + Math.exp(t.logprob), 0)).toBeLessThanOrEqual(1);
  });

  it("do not depend on temperature or truncation; absent unless asked for", () => {
    const a = draw(sampler, row, params({ temperature: 0, logprobs: true, topLogprobs: 3 }), 0);
    const b = draw(sampler, row, params({ temperature: 1.9, topK: 1, logprobs: true, topLogprobs: 3 }), 0.7);
    expect(b).toEqual(a);
    const none = draw(sampler, row, params({ temperature: 0 }), 0);
    expect(none.top).toBeNull();
    expect(Number.isNaN(none.logprob)).toBe(true);
    expect(draw(sampler, row, params({ logprobs: true }), 0.2).top).toEqual([]);
  });
});

describe("determinism", () => {
  const sampler = new Sampler(VOCAB_SIZE);
  const row = lmLogits(VOCAB_SIZE, 41);
  const p = params({ temperature: 1.2, topP: 0.95 });

  it("the same (seed, choice, step) gives the same token; other steps vary", () => {
    const tokens = new Set<number>();
    const other = new Sampler(VOCAB_SIZE);
    const unrelated = lmLogits(VOCAB_SIZE, 99);
    for (let step = 0; step < 40; step++) {
      const first = draw(sampler, row, p, uniform(5n, 2, step)).token;
      // Another sampler instance, after unrelated work in between: still the same.
      draw(other, unrelated, params({ topK: 7 }), 0.3);
      expect(draw(other, row, p, uniform(5n, 2, step)).token).toBe(first);
      tokens.add(first);
    }
    expect(tokens.size).toBeGreaterThan(5);
  });

  it("samples a row at an offset inside a [rows × vocab] buffer without touching the other rows", () => {
    const V = 100;
    const s = new Sampler(V);
    const buffer = new Float32Array(3 * V);
    buffer.set(lmLogits(V, 1), 0);
    buffer.set(lmLogits(V, 2), V);
    buffer.set(lmLogits(V, 3), 2 * V);
    const before = buffer.slice();
    const alone = sampleRow(s, lmLogits(V, 2), 0, params({ topK: 10, logitBias: { 3: 2 } }), noHistory(), 0.4);
    const inBatch = sampleRow(s, buffer, V, params({ topK: 10, logitBias: { 3: 2 } }), noHistory(), 0.4);
    expect(inBatch).toEqual(alone);
    expect(buffer.subarray(0, V)).toEqual(before.subarray(0, V));
    expect(buffer.subarray(2 * V)).toEqual(before.subarray(2 * V));
    expect(() => sampleRow(s, buffer, 2 * V + 1, params(), noHistory(), 0.4)).toThrow(RangeError);
  });
});
