import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LogitsNeed, type BatchRow, type RunnerOutput } from "../../runner/step-runner.ts";
import { CandidateDraw, FULL_ROW, TAIL } from "../candidate-draw.ts";
import { maskDisallowed, type LogitsConstraint } from "../logits-constraint.ts";
import { LogitsPreselector } from "../logits-preselector.ts";
import { uniformFromWords } from "../prng.ts";
import { Sampler } from "../sampler.ts";
import { DEFAULT_SAMPLING, type SampleResult, type SamplingParams } from "../sampling-params.ts";
import type { ScheduledRow } from "../scheduler.ts";
import { Sequence, SequenceStatus } from "../sequence.ts";
import { StepSampler, type ChoiceSampling } from "../step-sampler.ts";
import { StepTimings } from "../step-timings.ts";
import { TokenCounts } from "../token-counts.ts";
import { sampleRow } from "./sample-row.ts";

const V = 5000;
const SEED_LO = 0x1234;
const SEED_HI = 0x5678;

/** Allows a fixed set of tokens: the shape of a grammar's token bitmask, without a grammar. */
class AllowedTokens implements LogitsConstraint {
  readonly accepted: number[] = [];
  private readonly mask = new Uint32Array(Math.ceil(V / 32));

  constructor(readonly ids: number[]) {
    for (const id of ids) this.mask[id >>> 5] |= 1 << (id & 31);
  }

  allowedTokens(): Uint32Array {
    return this.mask;
  }

  accept(token: number): void {
    this.accepted.push(token);
  }
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4_294_967_296;
  };
}

function logitsFor(rows: number, seed: number): Float32Array {
  const rand = lcg(seed);
  const out = new Float32Array(rows * V);
  for (let i = 0; i < out.length; i++) out[i] = (rand() + rand() + rand() - 1.5) * 4 + (rand() < 0.002 ? 9 : 0);
  return out;
}

/** A batch of sequences, each at the end of its tokens (as after Scheduler.postprocess) unless `chunk`. */
class Batch {
  readonly rows: ScheduledRow[] = [];
  readonly choices = new Map<Sequence, ChoiceSampling>();

  add(params: SamplingParams, opts: { constraint?: LogitsConstraint; chunk?: boolean; history?: number[] } = {}): Sequence {
    const i = this.rows.length;
    const prompt = Array.from({ length: 12 }, (_, j) => (j * 977 + i * 31) % V);
    const seq = new Sequence(`req-${i}`, 0, prompt, opts.history ?? []);
    seq.status = SequenceStatus.Running;
    seq.numComputedTokens = opts.chunk ? 6 : seq.numTokens;
    const counts = new TokenCounts(prompt);
    for (const t of opts.history ?? []) counts.add(t);
    this.rows.push({ seq, numTokens: opts.chunk ? 6 : 1 });
    this.choices.set(seq, { params, counts, constraint: opts.constraint ?? null, seedLo: SEED_LO, seedHi: SEED_HI });
    return seq;
  }

  sampler(timings = new StepTimings()): StepSampler {
    return new StepSampler(V, 1, (seq) => this.choices.get(seq), timings);
  }

  /** Row r sampled on its own from a fresh copy of the raw logits: what StepSampler must reproduce. */
  reference(logits: Float32Array, r: number): SampleResult {
    const { seq } = this.rows[r];
    const s = this.choices.get(seq)!;
    const row = logits.slice(r * V, (r + 1) * V);
    return sampleRow(new Sampler(V), row, 0, s.params, s.counts, uniformFromWords(SEED_LO, SEED_HI, 0, seq.numOutputTokens));
  }
}

const P = (o: Partial<SamplingParams>): SamplingParams => ({ ...DEFAULT_SAMPLING, ...o });
const bias = { 17: 4, 4000: -100 };
const mixed: SamplingParams[] = [
  P({ temperature: 0, logprobs: true, topLogprobs: 5 }),
  P({ topK: 20, temperature: 0.8 }),
  P({ topK: 64, topP: 0.9, logprobs: true, topLogprobs: 3 }),
  P({}),
  P({ topP: 0.8, temperature: 1.2 }),
  P({ temperature: 0, logitBias: bias, repetitionPenalty: 1.3 }),
  P({ topK: 10, presencePenalty: 0.7, frequencyPenalty: 0.4, logprobs: true, topLogprobs: 2 }),
  P({ minP: 0.1, logprobs: true }),
];

let preselector: LogitsPreselector;
const released: StepSampler[] = [];
beforeAll(async () => {
  preselector = await LogitsPreselector.create(V, 1);
});
afterAll(async () => {
  await preselector.release();
  for (const s of released) await s.release();
});

function track(s: StepSampler): StepSampler {
  released.push(s);
  return s;
}

function expectSameDraw(got: SampleResult | null, want: SampleResult, what: string): void {
  expect(got, what).not.toBeNull();
  expect(got!.token, what).toBe(want.token);
  if (Number.isNaN(want.logprob)) {
    expect(got!.logprob, what).toBeNaN();
    expect(got!.top, what).toBeNull();
    return;
  }
  expect(Math.abs(got!.logprob - want.logprob), what).toBeLessThan(1e-6);
  expect(got!.top!.map((t) => t.token), what).toEqual(want.top!.map((t) => t.token));
}

describe("StepSampler", () => {
  it("draws each finished row as the row-by-row sampler does, and nothing for prefill chunks or finished sequences", async () => {
    const batch = new Batch();
    for (const p of mixed) batch.add(p, { history: [3, 17, 3, 99] });
    const chunk = batch.add(P({ temperature: 0 }), { chunk: true });
    const aborted = batch.add(P({ temperature: 0 }));
    aborted.status = SequenceStatus.Finished;
    const logits = logitsFor(batch.rows.length, 1);
    const timings = new StepTimings();
    const sampler = track(batch.sampler(timings));

    const results = await sampler.sample(batch.rows, { logits: logits.slice() });
    expect(results).toHaveLength(batch.rows.length);
    for (let r = 0; r < mixed.length; r++) expectSameDraw(results[r], batch.reference(logits, r), `row ${r}: ${JSON.stringify(mixed[r])}`);
    expect(results[batch.rows.findIndex((row) => row.seq === chunk)]).toBeNull();
    expect(results[batch.rows.findIndex((row) => row.seq === aborted)]).toBeNull();
    expect(timings.samplerMs).toBeGreaterThan(0);
  });

  it("tells the runner what each row needs back: nothing, candidates (bias and penalties applied there), or the full row", () => {
    const batch = new Batch();
    batch.add(P({ temperature: 0 }), { chunk: true });
    batch.add(P({ temperature: 0, logprobs: true, topLogprobs: 20 }));
    batch.add(P({ topK: 64, topP: 0.5 }));
    batch.add(P({}));
    batch.add(P({ topK: 65 }));
    batch.add(P({ temperature: 0, logitBias: bias }));
    batch.add(P({ topK: 5, repetitionPenalty: 1.1 }));
    batch.add(P({ temperature: 0 }), { constraint: new AllowedTokens([1, 2, 3]) });
    for (const row of batch.rows) row.seq.numComputedTokens -= row.numTokens; // asked before the forward pass
    const sampler = track(batch.sampler());
    // Plain sampling (no top_k) asks candidates too: the draw reads the whole row only when it lands in the tail.
    expect(batch.rows.map((row) => sampler.needs(row))).toEqual([
      LogitsNeed.None, LogitsNeed.Candidates, LogitsNeed.Candidates, LogitsNeed.Candidates,
      LogitsNeed.FullRow, LogitsNeed.Candidates, LogitsNeed.Candidates, LogitsNeed.FullRow,
    ]);
    // Candidates rows carry their bias and penalties as sparse entries, and their temperature.
    const described = batch.rows.map((row) => {
      const into: BatchRow = { tokens: [], pastLen: 0, blockTable: [] };
      sampler.describe(row, into);
      return into;
    });
    expect(described[3]).toMatchObject({ needs: LogitsNeed.Candidates, adjust: null, temperature: 1 });
    const biased = described[5].adjust!;
    expect(Array.from(biased.ids.subarray(0, biased.count)).sort((a, b) => a - b)).toEqual(Object.keys(bias).map(Number).filter((id) => (bias as Record<number, number>)[id] !== 0).sort((a, b) => a - b));
    expect(described[5].temperature).toBe(0);
    const penalised = described[6].adjust!;
    expect(penalised.count).toBeGreaterThan(0);
    for (let i = 0; i < penalised.count; i++) expect(penalised.penalty[i]).toBeCloseTo(1.1, 6);
    expect(described[7]).toMatchObject({ needs: LogitsNeed.FullRow, adjust: null });
  });

  it("draws from a runner's own candidates without its logits rows, with the same tokens and logprobs", async () => {
    const batch = new Batch();
    const params = [
      P({ temperature: 0, logprobs: true, topLogprobs: 5 }), P({ topK: 40, temperature: 0.7, logprobs: true, topLogprobs: 20 }),
      P({ topK: 64, topP: 0.8, minP: 0.02 }), P({ topK: 1, temperature: 1.5, logprobs: true }),
    ];
    for (let i = 0; i < 3; i++) for (const p of params) batch.add(p);
    const logits = logitsFor(batch.rows.length, 2);
    const asked = track(batch.sampler());
    for (const row of batch.rows) row.seq.numComputedTokens -= row.numTokens;
    for (const row of batch.rows) expect(asked.needs(row)).toBe(LogitsNeed.Candidates);
    for (const row of batch.rows) row.seq.numComputedTokens += row.numTokens;

    const full = await track(batch.sampler()).sample(batch.rows, { logits: logits.slice() });
    const wanted = full.map((r) => r && { ...r });
    // A device runner's answer: the rows ranked where they were computed, and no logits.
    const ranked = await preselector.run(logits.slice(), batch.rows.length, true);
    const fromDevice = await track(batch.sampler()).sample(batch.rows, { candidates: ranked });
    for (let r = 0; r < batch.rows.length; r++) expectSameDraw(fromDevice[r], wanted[r]!, `row ${r}`);
  });

  it("draws plain rows (bias and penalties applied by the runner) from its candidates, fetching whole rows only for draws that need them", async () => {
    const batch = new Batch();
    const params = [
      P({ logitBias: { 17: 12, 18: 11 }, presencePenalty: 0.5, temperature: 0.9, logprobs: true, topLogprobs: 2 }),
      P({}), P({ topP: 0.5 }), P({ minP: 0.2, repetitionPenalty: 1.2 }), P({ temperature: 1.4 }),
    ];
    for (let h = 0; h < 6; h++) for (const p of params) batch.add(p, { history: Array.from({ length: h }, (_, i) => (i * 131) % V) });
    const R = batch.rows.length;
    const raw = logitsFor(R, 9);
    const sampler = track(batch.sampler());
    for (const row of batch.rows) row.seq.numComputedTokens -= row.numTokens;
    const described = batch.rows.map((row) => {
      const into: BatchRow = { tokens: [], pastLen: 0, blockTable: [] };
      sampler.describe(row, into);
      return into;
    });
    for (const row of batch.rows) row.seq.numComputedTokens += row.numTokens;
    expect(described.every((d) => d.needs === LogitsNeed.Candidates)).toBe(true);
    // What a device runner computes: each row adjusted by its sparse entries, ranked, and its log-sum-exps.
    const adjusted = raw.slice();
    described.forEach((d, r) => {
      const a = d.adjust;
      for (let i = 0; a && i < a.count; i++) {
        const at = r * V + a.ids[i];
        const y = adjusted[at] + a.bias[i];
        adjusted[at] = (y > 0 ? y / a.penalty[i] : y * a.penalty[i]) + a.addend[i];
      }
    });
    const ranked = await preselector.run(adjusted.slice(), R, true);
    const scaled = Float64Array.from(described, (d, r) => {
      const invT = 1 / (d.temperature ?? 1);
      let max = -Infinity;
      for (let i = 0; i < V; i++) max = Math.max(max, adjusted[r * V + i] * invT);
      let z = 0;
      for (let i = 0; i < V; i++) z += Math.exp(adjusted[r * V + i] * invT - max);
      return max + Math.log(z);
    });
    const candidates = { ...ranked, scaledLogSumExp: scaled };
    const fetched: number[] = [];
    const fetchRows = async (rows: ArrayLike<number>) => {
      const out = new Float32Array(rows.length * V);
      for (let i = 0; i < rows.length; i++) {
        fetched.push(rows[i]);
        out.set(raw.subarray(rows[i] * V, (rows[i] + 1) * V), i * V); // raw: the sampler adjusts it itself
      }
      return out;
    };
    const results = await sampler.sample(batch.rows, { candidates, fetchRows });
    // The same draws one by one: candidates, the tail walk, or the host sampler on the adjusted row.
    const draw = new CandidateDraw(V);
    const expectedFetch: number[] = [];
    for (let r = 0; r < R; r++) {
      const { seq } = batch.rows[r];
      const s = batch.choices.get(seq)!;
      const u = uniformFromWords(SEED_LO, SEED_HI, 0, seq.numOutputTokens);
      const row = adjusted.subarray(r * V, (r + 1) * V);
      let token = draw.tryCandidates(candidates, r, s.params, u);
      if (token === TAIL) token = draw.drawTail(row, 0, candidates, r, s.params, u);
      else if (token === FULL_ROW) token = batch.reference(raw, r).token;
      if (draw.tryCandidates(candidates, r, s.params, u) < 0) expectedFetch.push(r);
      expect(results[r]!.token, `row ${r}`).toBe(token);
      if (s.params.logprobs) expect(Math.abs(results[r]!.logprob - (row[token] - ranked.logSumExp![r]))).toBeLessThan(1e-4);
    }
    expect(fetched).toEqual(expectedFetch);
    expect(fetched.length).toBeLessThan(R); // most rows drew from their candidates
    expect(fetched.length).toBeGreaterThan(0);
  });

  it("refuses a runner output that cannot serve its rows, with a clear message", async () => {
    const batch = new Batch();
    batch.add(P({ topK: 65 }));
    const logits = logitsFor(1, 3);
    const ranked = await preselector.run(logits, 1, true);
    const sampler = track(batch.sampler());
    await expect(sampler.sample(batch.rows, { candidates: ranked })).rejects.toThrow(/no logits for the row at 0, which needs its full row/);
    // A plain row whose draw needs the whole row (here: no log-sum-exp at its temperature) needs fetchRows.
    const plain = new Batch();
    plain.add(P({}));
    await expect(track(plain.sampler()).sample(plain.rows, { candidates: ranked })).rejects.toThrow(/without fetchRows, and a draw needs its whole row/);
    const withoutLse: RunnerOutput = { candidates: { ...ranked, logSumExp: null } };
    await expect(sampler.sample(batch.rows, withoutLse)).rejects.toThrow(/logSumExp is missing/);
  });

  it("applies a choice's constraint after bias and penalties: only allowed tokens are drawn or listed", async () => {
    const allowed = [5, 17, 300, 301, 4001, 4999];
    const batch = new Batch();
    const params = [
      P({ temperature: 0, logprobs: true, topLogprobs: 4 }), P({ topK: 3, logprobs: true, topLogprobs: 8 }), P({}), P({ topP: 0.9 }),
      P({ temperature: 0, logitBias: { 6: 100 } }), P({ repetitionPenalty: 1.5, temperature: 2 }),
    ];
    for (const p of params) batch.add(p, { constraint: new AllowedTokens(allowed) });
    const sampler = track(batch.sampler());
    const seen = new Set<number>();
    for (let round = 0; round < 40; round++) {
      const logits = logitsFor(batch.rows.length, 100 + round);
      const results = await sampler.sample(batch.rows, { logits });
      results.forEach((result, r) => {
        expect(allowed).toContain(result!.token);
        seen.add(result!.token);
        if (params[r].logprobs) {
          expect(result!.logprob).toBeGreaterThan(-Infinity);
          for (const t of result!.top!) if (!allowed.includes(t.token)) expect(t.logprob).toBe(-Infinity);
          expect(allowed).toContain(result!.top![0].token);
        }
      });
    }
    expect(seen.size).toBeGreaterThan(3); // the mask narrows the draw, it does not fix it
  });
});

describe("maskDisallowed", () => {
  it("sets exactly the tokens the bitmask leaves out to -Infinity, on a vocabulary that is not a multiple of 32", () => {
    const vocab = 70;
    const row = new Float32Array(vocab + 10).fill(1);
    const mask = new Uint32Array(3);
    const allowed = [0, 31, 32, 33, 63, 64, 69];
    for (const id of allowed) mask[id >>> 5] |= 1 << (id & 31);
    maskDisallowed(row, 5, vocab, mask);
    for (let i = 0; i < row.length; i++) {
      const inRow = i >= 5 && i < 5 + vocab;
      expect(row[i], `index ${i}`).toBe(!inRow || allowed.includes(i - 5) ? 1 : -Infinity);
    }
    expect(() => maskDisallowed(row, 0, vocab, new Uint32Array(2))).toThrow(/bitmask of 2 words is short of a 70-token vocabulary/);
  });
});
