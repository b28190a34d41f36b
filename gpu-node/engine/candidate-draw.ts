/**
 * Plain sampling (temperature, optional top_p / min_p, no top_k) from a device's ranked candidates, so the
 * default request does not bring its 100k-entry row back every step.
 *
 * The draw orders the vocabulary as: the head (the best candidates down to a clear gap: headOf) by id,
 * then every other token by id. With the row's mass at its temperature (Z, from scaledLogSumExp) the
 * head's cumulative weights say where each head token's interval lies; the uniform u picks the token
 * whose interval holds u·Z. When u·Z is past the head (probability: the tail's mass), the whole row is
 * fetched and the draw walks the tail in id order (drawTail): each token keeps probability w/Z, so the
 * distribution is the whole row's. Only the mapping of u to tokens differs from the host sampler's (id
 * order throughout), so the text differs from the CPU layout's. A seed gives the same text alone and in a
 * batch where draws land in the head; a tail draw is as sensitive to fp16 noise as any walk of the row.
 * A row without such a gap in its candidates (a nearly flat row) is drawn by the host sampler (FULL_ROW).
 *
 * min_p and top_p cut the distribution first: they are decided from the candidates when min_p drops a
 * candidate (then it drops the whole tail, which ranks below) or when the candidates' mass reaches top_p
 * of the total; otherwise the decision needs the row whatever u is (FULL_ROW: the host sampler draws).
 */
import { MAX_TOP_LOGPROBS } from "../../shared/limits.ts";
import type { PreselectedCandidates } from "../runner/step-runner.ts";
import { expNonPositive } from "./fast-exp.ts";
import type { SampleResult, SamplingParams } from "./sampling-params.ts";

/** Logit units between the head's last token and the next: far above fp16 noise (see headOf). */
export const HEAD_GAP = 0.1;

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
  private cumulative = new Float64Array(0);
  private sortedIds = new Int32Array(0);
  private sortedValues = new Float32Array(0);
  private readonly isCandidate: Uint8Array;

  constructor(private readonly vocabSize: number) {
    this.isCandidate = new Uint8Array(vocabSize);
  }

  private ensureScratch(k: number): void {
    if (this.cumulative.length >= k) return;
    this.cumulative = new Float64Array(k);
    this.sortedIds = new Int32Array(k);
    this.sortedValues = new Float32Array(k);
  }

  /** The token drawn from row r's candidates, or TAIL / FULL_ROW (see the file comment). */
  tryCandidates(c: PreselectedCandidates, r: number, p: SamplingParams, u: number): number {
    const lseT = c.scaledLogSumExp?.[r];
    if (lseT === undefined || !Number.isFinite(lseT)) return FULL_ROW;
    this.ensureScratch(c.k);
    const base = r * c.k;
    const max = c.values[base];
    if (!Number.isFinite(max)) return FULL_ROW;
    const head = headOf(c, r);
    if (head === 0) return FULL_ROW;
    const invT = 1 / p.temperature;
    // min_p and top_p keep a prefix of the ranked head (the host sampler's rules); the draw walks it by id.
    let sum = 0;
    let kept = 0;
    for (; kept < head; kept++) {
      const w = expNonPositive((c.values[base + kept] - max) * invT);
      if (w < p.minP) break;
      sum += w;
    }
    let total: number;
    if (p.minP > 0) {
      if (kept === head) return FULL_ROW; // the tail may hold tokens min_p keeps
      total = sum; // min_p dropped a head token, so every tail token too
    } else {
      // The row's mass relative to its max (never below what the head alone carries).
      total = Math.max(sum, Math.exp(lseT - max * invT));
    }
    if (p.topP < 1) {
      const nucleus = p.topP * total;
      if (sum < nucleus) return FULL_ROW; // the nucleus reaches into the tail
      // Keep a token while the mass ranked above it is below top_p (as the host sampler does).
      let cut = 1;
      let above = expNonPositive((c.values[base] - max) * invT);
      while (cut < kept && above < nucleus) above += expNonPositive((c.values[base + cut++] - max) * invT);
      const inNucleus = this.sortById(c, r, cut, max, invT);
      return this.sortedIds[searchCumulative(this.cumulative, cut, u * inNucleus)];
    }
    const headMass = this.sortById(c, r, kept, max, invT);
    const target = u * total;
    if (p.minP > 0) return this.sortedIds[searchCumulative(this.cumulative, kept, target)];
    return target < headMass ? this.sortedIds[searchCumulative(this.cumulative, kept, target)] : TAIL;
  }

  /**
   * The draw for a row tryCandidates answered TAIL, on its whole row (bias and penalties applied): the
   * same order and u, with exact float64 weights; a head token when rounding put u·Z back inside the head.
   */
  drawTail(row: Float32Array, offset: number, c: PreselectedCandidates, r: number, p: SamplingParams, u: number): number {
    const V = this.vocabSize;
    this.ensureScratch(c.k);
    const head = headOf(c, r);
    const invT = 1 / p.temperature;
    const max = rowMax(row, offset, V);
    this.sortById(c, r, head, NaN, invT);
    const ids = this.sortedIds;
    const cum = this.cumulative;
    const mark = this.isCandidate;
    let headMass = 0;
    for (let i = 0; i < head; i++) {
      mark[ids[i]] = 1;
      headMass += Math.exp((row[offset + ids[i]] - max) * invT);
      cum[i] = headMass;
    }
    const total = massOf(row, offset, V, max, invT);
    const target = u * total;
    let token = target < headMass ? ids[searchCumulative(cum, head, target)] : walkTail(row, offset, V, max, invT, mark, target - headMass);
    if (token < 0) token = ids[head - 1]; // rounding left nothing
    for (let i = 0; i < head; i++) mark[ids[i]] = 0;
    return token;
  }

  /**
   * The first n ranked candidates of row r sorted by id into sortedIds, with their cumulative weights
   * (relative to `max`, at 1/T) in cumulative; returns the total. NaN max: ids only.
   */
  private sortById(c: PreselectedCandidates, r: number, n: number, max: number, invT: number): number {
    const ids = this.sortedIds;
    const values = this.sortedValues;
    const base = r * c.k;
    for (let i = 0; i < n; i++) {
      const id = c.ids[base + i];
      const v = c.values[base + i];
      let j = i;
      for (; j > 0 && ids[j - 1] > id; j--) {
        ids[j] = ids[j - 1];
        values[j] = values[j - 1];
      }
      ids[j] = id;
      values[j] = v;
    }
    if (max !== max) return NaN;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      sum += expNonPositive((values[i] - max) * invT);
      this.cumulative[i] = sum;
    }
    return sum;
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

/**
 * How many of row r's ranked candidates form its head: the longest prefix followed by a drop of at least
 * HEAD_GAP (0: none). Why a gap: the device computes in fp16, and a batch of another shape, or a prefill
 * instead of a decode, moves logits by a few units in the last place. A head boundary inside a run of
 * close values would let such noise move a token between head and tail, which reorders the walk; across
 * a gap it cannot. Within the head the draw goes by id, so noise that swaps two head tokens' ranks does
 * not change which token u picks either.
 */
function headOf(c: PreselectedCandidates, r: number): number {
  const base = r * c.k;
  for (let h = c.k - 1; h > 0; h--) if (c.values[base + h - 1] - c.values[base + h] >= HEAD_GAP) return h;
  return 0;
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
