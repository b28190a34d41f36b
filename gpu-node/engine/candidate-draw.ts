/**
 * Plain sampling (temperature, optional top_p / min_p, no top_k) from a device's ranked candidates, so the
 * default request does not bring its 100k-entry row back every step.
 *
 * The draw orders the vocabulary as: the k candidates best first, then every other token by id. With
 * the row's mass at its temperature (Z, from scaledLogSumExp) the candidates' cumulative weights say
 * where each candidate's interval lies; the uniform u picks the token whose interval holds u·Z. When u·Z
 * is past the candidates (probability: the tail's mass), the whole row is fetched and the draw walks the
 * tail in id order (drawTail): each token keeps probability w/Z, so the distribution is the whole row's.
 * Only the mapping of u to tokens differs from the host sampler's (id order), so a seed gives the same
 * text alone and in a batch, but not the same text as the CPU layout.
 *
 * min_p and top_p cut the distribution first: they are decided from the candidates when min_p drops a
 * candidate (then it drops the whole tail, which ranks below) or when the candidates' mass reaches top_p
 * of the total; otherwise the decision needs the row whatever u is (FULL_ROW: the host sampler draws).
 */
import { MAX_TOP_LOGPROBS } from "../../shared/limits.ts";
import type { PreselectedCandidates } from "../runner/step-runner.ts";
import { expNonPositive } from "./fast-exp.ts";
import type { SampleResult, SamplingParams } from "./sampler.ts";

/** tryCandidates: u falls in the tail; draw it from the whole row with drawTail. */
export const TAIL = -1;
/** tryCandidates: min_p / top_p cannot be decided from the candidates; the host sampler draws from the whole row. */
export const FULL_ROW = -2;

/** Whether a row's settings are drawn this way (drawsFromCandidates covers greedy and top_k ≤ k). */
export function drawsFromCandidatesOrTail(params: SamplingParams, k: number, vocabSize: number): boolean {
  const topK = params.topK > 0 && params.topK < vocabSize ? params.topK : 0;
  return params.temperature > 0 && topK === 0 && (!params.logprobs || Math.min(params.topLogprobs, MAX_TOP_LOGPROBS) <= k);
}

export class CandidateDraw {
  private cumulative = new Float64Array(64);
  private readonly isCandidate: Uint8Array;

  constructor(private readonly vocabSize: number) {
    this.isCandidate = new Uint8Array(vocabSize);
  }

  /** The token drawn from row r's candidates, or TAIL / FULL_ROW (see the file comment). */
  tryCandidates(c: PreselectedCandidates, r: number, p: SamplingParams, u: number): number {
    const lseT = c.scaledLogSumExp?.[r];
    if (lseT === undefined || !Number.isFinite(lseT)) return FULL_ROW;
    const k = c.k;
    const base = r * k;
    const max = c.values[base];
    if (!Number.isFinite(max)) return FULL_ROW;
    if (this.cumulative.length < k) this.cumulative = new Float64Array(k);
    const cum = this.cumulative;
    const invT = 1 / p.temperature;
    let sum = 0;
    let kept = 0;
    for (; kept < k; kept++) {
      const w = expNonPositive((c.values[base + kept] - max) * invT);
      if (w < p.minP) break;
      sum += w;
      cum[kept] = sum;
    }
    let total: number;
    if (p.minP > 0) {
      if (kept === k) return FULL_ROW; // the tail may hold tokens min_p keeps
      total = sum; // min_p dropped a candidate, so every tail token too
    } else {
      // The row's mass relative to its max (never below what the candidates alone carry).
      total = Math.max(sum, Math.exp(lseT - max * invT));
    }
    if (p.topP < 1) {
      const nucleus = p.topP * total;
      if (cum[kept - 1] < nucleus) return FULL_ROW; // the nucleus reaches into the tail
      // Keep a token while the mass ranked above it is below top_p (as the host sampler does).
      let cut = 1;
      while (cut < kept && cum[cut - 1] < nucleus) cut++;
      return c.ids[base + searchCumulative(cum, cut, u * cum[cut - 1])];
    }
    if (p.minP > 0) return c.ids[base + searchCumulative(cum, kept, u * total)];
    const target = u * total;
    return target < sum ? c.ids[base + searchCumulative(cum, kept, target)] : TAIL;
  }

  /**
   * The draw for a row tryCandidates answered TAIL, on its whole row (bias and penalties applied): the
   * same order and u, with exact float64 weights; a token of the candidates when rounding put u·Z
   * back inside them.
   */
  drawTail(row: Float32Array, offset: number, c: PreselectedCandidates, r: number, p: SamplingParams, u: number): number {
    const V = this.vocabSize;
    const k = c.k;
    const base = r * k;
    const invT = 1 / p.temperature;
    const max = rowMax(row, offset, V);
    const mark = this.isCandidate;
    let candidateMass = 0;
    for (let i = 0; i < k; i++) {
      mark[c.ids[base + i]] = 1;
      candidateMass += Math.exp((row[offset + c.ids[base + i]] - max) * invT);
    }
    const total = massOf(row, offset, V, max, invT);
    let target = u * total;
    let token = -1;
    if (target < candidateMass) {
      let cum = 0;
      for (let i = 0; i < k && token < 0; i++) {
        cum += Math.exp((row[offset + c.ids[base + i]] - max) * invT);
        if (cum > target) token = c.ids[base + i];
      }
    }
    if (token < 0) {
      target -= candidateMass;
      token = walkTail(row, offset, V, max, invT, mark, target);
      if (token < 0) token = c.ids[base + k - 1]; // rounding left nothing: the last candidate
    }
    for (let i = 0; i < k; i++) mark[c.ids[base + i]] = 0;
    return token;
  }

  /** Token and logprobs (from the candidates and the row's log-sum-exp) of a token drawn this way. */
  result(c: PreselectedCandidates, r: number, token: number, tokenLogit: number, p: SamplingParams): SampleResult {
    if (!p.logprobs) return { token, logprob: NaN, top: null };
    const logZ = c.logSumExp![r];
    const count = Math.min(p.topLogprobs, MAX_TOP_LOGPROBS, c.k);
    const top = new Array<{ token: number; logprob: number }>(count);
    for (let i = 0; i < count; i++) top[i] = { token: c.ids[r * c.k + i], logprob: c.values[r * c.k + i] - logZ };
    return { token, logprob: tokenLogit - logZ, top };
  }
}

// Each scan is a function of its own that ends right after its loop (see the V8 note in sampler.ts).

function rowMax(row: Float32Array, offset: number, V: number): number {
  let max = -Infinity;
  for (let i = offset; i < offset + V; i++) if (row[i] > max) max = row[i];
  return max;
}

function massOf(row: Float32Array, offset: number, V: number, max: number, invT: number): number {
  let z = 0;
  for (let i = 0; i < V; i++) z += Math.exp((row[offset + i] - max) * invT);
  return z;
}

/** The first non-candidate token, in id order, at which the tail's cumulative weight passes target; -1 if none. */
function walkTail(row: Float32Array, offset: number, V: number, max: number, invT: number, mark: Uint8Array, target: number): number {
  let cum = 0;
  let last = -1;
  for (let i = 0; i < V; i++) {
    if (mark[i] === 1) continue;
    const w = Math.exp((row[offset + i] - max) * invT);
    if (w === 0) continue;
    cum += w;
    last = i;
    if (cum > target) return i;
  }
  return last;
}

/** First index i < n with cum[i] > target; n − 1 when rounding leaves none. */
function searchCumulative(cum: Float64Array, n: number, target: number): number {
  let lo = 0;
  let hi = n - 1;
  if (!(cum[hi] > target)) return hi;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cum[mid] > target) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
