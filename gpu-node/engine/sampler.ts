/**
 * The sampler: one row of logits + a request's sampling settings + one uniform draw → one token.
 *
 * Order of operations (vLLM's): logit_bias → repetition penalty → frequency/presence penalties (applied
 * to the row beforehand: logit-adjustments.ts) → (greedy when temperature is 0) → temperature → min_p /
 * top_k / top_p → inverse-CDF draw with `u`. min_p and top_k each keep a prefix of the tokens ranked by
 * logit, so they commute; top_p is taken last, on the distribution renormalised over what they kept.
 *
 * Logprobs (OpenAI's `logprobs` / `top_logprobs`): log-softmax of the logits after bias and penalties,
 * before temperature and truncation (temperature 1, whole vocabulary). They describe what the model,
 * under this request's bias and penalties, thought of each token, independent of how the draw was
 * shaped, so they stay comparable between requests; a token banned by logit_bias shows as very unlikely.
 *
 * Cost per token on a 100k vocabulary: never a full sort. Greedy and top_k scan the row once (a bounded
 * heap for top_k: ranking-heap.ts), or read candidates ranked for the whole batch beforehand; top_p
 * without top_k needs the exact normaliser (nucleus.ts). The hot path allocates nothing but the result:
 * scratch (~3.5 MB at 100k) lives in the Sampler, one per step loop.
 */
import { MAX_TOP_LOGPROBS, VOCAB_SIZE } from "../../shared/limits.ts";
import type { PreselectedCandidates } from "../runner/step-runner.ts";
import { expNonPositive } from "./fast-exp.ts";
import { NucleusSampler } from "./nucleus.ts";
import { keyId, MAX_RANKED_VOCAB, rankKey, selectBest } from "./ranking-heap.ts";
import type { SampleResult, SamplingParams } from "./sampling-params.ts";

// V8 note for the hot loops below: each sits in a function of its own that ends right after the loop.
// A loop compiled on-stack (OSR) without type feedback for the code after it deoptimises on every call
// when that code is non-trivial (measured on Node 20: thousands of deopts per thousand samples).

/** Index of the first maximum of row[start..end) (NaN never wins), or -1 when none beats -Infinity. */
function firstMaxIndex(row: Float32Array, start: number, end: number): number {
  let best = -1;
  let max = -Infinity;
  for (let i = start; i < end; i++) {
    const x = row[i];
    if (x > max) {
      max = x;
      best = i;
    }
  }
  return best;
}

/** cum[i] = Σ weights of tokens 0..i (weight e^((x - max)/T), 0 below min_p); returns the total. */
function cumulativeWeights(
  row: Float32Array, offset: number, vocab: number, max: number, invT: number, minP: number, cum: Float64Array,
): number {
  let sum = 0;
  for (let i = 0, j = offset; i < vocab; i++, j++) {
    const w = expNonPositive((row[j] - max) * invT);
    if (w >= minP) sum += w;
    cum[i] = sum;
  }
  return sum;
}

/** Σ exp(x - max) over row[start..end). */
function sumExpBelow(row: Float32Array, start: number, end: number, max: number): number {
  let z = 0;
  for (let j = start; j < end; j++) z += expNonPositive(row[j] - max);
  return z;
}

/**
 * Whether a row with these params can be drawn from its `k` best-ranked candidates instead of a scan of
 * the whole row: greedy, or top_k ≤ k, with the top_logprobs shown within them too.
 */
export function drawsFromCandidates(params: SamplingParams, k: number, vocabSize: number): boolean {
  const topK = params.topK > 0 && params.topK < vocabSize ? params.topK : 0;
  const greedy = params.temperature === 0 || topK === 1;
  if (!greedy && topK === 0) return false;
  return Math.max(greedy ? 1 : topK, params.logprobs ? Math.min(params.topLogprobs, MAX_TOP_LOGPROBS) : 0) <= k;
}

export class Sampler {
  readonly vocabSize: number;
  /** candidate keys (top_k heap, top_p's ranked fine bucket), then their cumulative weights. */
  private readonly keys: Float64Array;
  private readonly cumulative: Float64Array;
  private readonly nucleus: NucleusSampler;
  private readonly topHeap = new Float64Array(MAX_TOP_LOGPROBS);
  /** Σ exp(x - max) over the row when the draw computed it at temperature 1 (else NaN), for logprobs. */
  private fullTotal = NaN;

  constructor(vocabSize: number = VOCAB_SIZE) {
    if (vocabSize > MAX_RANKED_VOCAB) throw new RangeError(`vocabulary of ${vocabSize} exceeds ${MAX_RANKED_VOCAB}`);
    this.vocabSize = vocabSize;
    this.keys = new Float64Array(vocabSize);
    this.cumulative = new Float64Array(vocabSize);
    this.nucleus = new NucleusSampler(vocabSize, this.keys);
  }

  /**
   * Draws one token from a row that bias, penalties and any constraint were already applied to
   * (logit-adjustments.ts). With `candidates` (this buffer's rows ranked after those adjustments;
   * `candidateRow` is this row's index in them), rows that drawsFromCandidates allows read the ranked
   * candidates instead of scanning the row; the result is the same token and logprobs. `candidatesOnly`:
   * the row holds just this row's candidates (-Infinity elsewhere), so logprobs take their log-sum-exp.
   */
  draw(
    logits: Float32Array, offset: number, params: SamplingParams, u: number,
    candidates: PreselectedCandidates | null = null, candidateRow = 0, candidatesOnly = false,
  ): SampleResult {
    const V = this.vocabSize;
    if (offset < 0 || offset + V > logits.length) throw new RangeError(`row at ${offset} lies outside the logits buffer`);
    let token: number;
    let rowMax = NaN;
    let ranked = 0;
    this.fullTotal = NaN;
    const topK = params.topK > 0 && params.topK < V ? params.topK : 0;
    const greedy = params.temperature === 0 || topK === 1;
    // Candidates to rank: the draw's (1 for greedy, top_k) and the top_logprobs shown.
    const wanted = Math.max(greedy ? 1 : topK, params.logprobs ? Math.min(params.topLogprobs, MAX_TOP_LOGPROBS) : 0);
    const preselected = candidates !== null && drawsFromCandidates(params, candidates.k, V) &&
      this.loadCandidates(logits, offset, candidates, candidateRow, wanted);
    if (preselected) {
      ranked = wanted;
      rowMax = logits[offset + keyId(this.keys[0])];
      token = greedy ? keyId(this.keys[0]) : this.drawFromRanked(logits, offset, topK, params, u);
    } else if (greedy) {
      token = this.argmax(logits, offset);
      rowMax = logits[offset + token];
    } else if (topK > 0) {
      ranked = this.selectTopK(logits, offset, topK);
      rowMax = logits[offset + keyId(this.keys[0])];
      token = this.drawFromRanked(logits, offset, ranked, params, u);
    } else {
      token = this.argmax(logits, offset);
      rowMax = logits[offset + token];
      token = params.topP < 1
        ? this.drawNucleus(logits, offset, rowMax, params, u)
        : this.drawFull(logits, offset, rowMax, params, u);
    }

    if (!params.logprobs) return { token, logprob: NaN, top: null };
    // At temperature 1 without min_p the draw already summed the normaliser; top_k already ranked the head.
    const lse = (preselected || candidatesOnly) && candidates !== null && candidates.logSumExp !== null
      ? candidates.logSumExp[candidateRow]
      : NaN;
    let logZ = lse;
    if (!Number.isFinite(lse)) {
      const z = Number.isNaN(this.fullTotal) ? this.normaliser(logits, offset, rowMax) : this.fullTotal;
      logZ = rowMax + Math.log(z);
    }
    const top = ranked >= params.topLogprobs
      ? this.rankedLogprobs(logits, offset, Math.min(params.topLogprobs, MAX_TOP_LOGPROBS), logZ)
      : this.topLogprobs(logits, offset, params.topLogprobs, logZ);
    return { token, logprob: logits[offset + token] - logZ, top };
  }

  /** The first `count` ranked candidates (keys[0..), best first) with their logprobs. */
  private rankedLogprobs(row: Float32Array, offset: number, count: number, logZ: number): Array<{ token: number; logprob: number }> {
    const top = new Array<{ token: number; logprob: number }>(count);
    for (let i = 0; i < count; i++) {
      const token = keyId(this.keys[i]);
      top[i] = { token, logprob: row[offset + token] - logZ };
    }
    return top;
  }

  /**
   * The first n preselected candidates of a row as ranking keys in keys[0..n); false (use the full scan)
   * when one is NaN or ±0: onnxruntime orders -0 and +0 as equal (lower id first), the keys put +0 first.
   * Without those, both orders are "higher logit, then lower id", so both pick the same top n.
   */
  private loadCandidates(row: Float32Array, offset: number, c: PreselectedCandidates, r: number, n: number): boolean {
    const base = r * c.k;
    for (let i = 0; i < n; i++) {
      const v = c.values[base + i];
      if (v !== v || v === 0) return false;
    }
    for (let i = 0; i < n; i++) {
      const id = c.ids[base + i];
      this.keys[i] = rankKey(row[offset + id], id);
    }
    return true;
  }

  /** Highest logit, lowest id on ties; NaN never wins. */
  private argmax(row: Float32Array, offset: number): number {
    const end = offset + this.vocabSize;
    const best = firstMaxIndex(row, offset, end);
    if (best !== -1) return best - offset;
    // Every logit is -Infinity or NaN: fall back to the first non-NaN.
    for (let i = offset; i < end; i++) if (row[i] === -Infinity) return i - offset;
    return 0;
  }

  /** The k best tokens as ranking keys in keys[0..n), best first. */
  private selectTopK(row: Float32Array, offset: number, k: number): number {
    return selectBest(row, offset, this.vocabSize, k, this.keys);
  }

  /**
   * Draws from ranked candidates keys[0..n) (best first): weights relative to the best, min_p and top_p
   * cuts, then the inverse CDF at u.
   */
  private drawFromRanked(row: Float32Array, offset: number, n: number, p: SamplingParams, u: number): number {
    const keys = this.keys;
    const cum = this.cumulative;
    const invT = 1 / p.temperature;
    const max = row[offset + keyId(keys[0])];
    let sum = 0;
    let kept = 0;
    for (; kept < n; kept++) {
      const w = expNonPositive((row[offset + keyId(keys[kept])] - max) * invT);
      if (w < p.minP || (w === 0 && kept > 0)) break;
      sum += w;
      cum[kept] = sum;
    }
    if (p.topP < 1) {
      const nucleus = p.topP * sum;
      // Keep a token while the mass ranked above it is below top_p (vLLM's rule: at least one survives).
      let cut = 1;
      while (cut < kept && cum[cut - 1] < nucleus) cut++;
      kept = cut;
      sum = cum[kept - 1];
    }
    return keyId(keys[this.searchCumulative(kept, u * sum)]);
  }

  /** top_p without top_k (nucleus.ts); at temperature 1 without min_p its total is the softmax normaliser. */
  private drawNucleus(row: Float32Array, offset: number, max: number, p: SamplingParams, u: number): number {
    const token = this.nucleus.draw(row, offset, max, p, u);
    if (p.temperature === 1 && p.minP === 0) this.fullTotal = this.nucleus.total;
    return token;
  }

  /** No truncation but min_p: inverse CDF over the vocabulary in id order. */
  private drawFull(row: Float32Array, offset: number, max: number, p: SamplingParams, u: number): number {
    const V = this.vocabSize;
    const cum = this.cumulative;
    const invT = 1 / p.temperature;
    const minP = p.minP;
    const sum = cumulativeWeights(row, offset, V, max, invT, minP, cum);
    if (invT === 1 && minP === 0) this.fullTotal = sum;
    return this.searchCumulative(V, u * sum);
  }

  /** First index i < n with cum[i] > target (cum non-decreasing); the last positive entry when rounding leaves none. */
  private searchCumulative(n: number, target: number): number {
    const cum = this.cumulative;
    let lo = 0;
    let hi = n - 1;
    if (!(cum[hi] > target)) {
      while (hi > 0 && cum[hi - 1] === cum[hi]) hi--;
      return hi;
    }
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid] > target) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Σ exp(x - max) over the row: the softmax normaliser at temperature 1. */
  private normaliser(row: Float32Array, offset: number, max: number): number {
    return sumExpBelow(row, offset, offset + this.vocabSize, max);
  }

  private topLogprobs(row: Float32Array, offset: number, count: number, logZ: number): Array<{ token: number; logprob: number }> {
    const k = Math.min(count, this.vocabSize, this.topHeap.length);
    if (k <= 0) return [];
    const h = this.topHeap;
    const size = selectBest(row, offset, this.vocabSize, k, h);
    const top = new Array<{ token: number; logprob: number }>(size);
    for (let i = 0; i < size; i++) {
      const token = keyId(h[i]);
      top[i] = { token, logprob: row[offset + token] - logZ };
    }
    return top;
  }
}
