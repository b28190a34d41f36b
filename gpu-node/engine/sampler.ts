/**
 * The sampler: one row of logits + a request's sampling settings + one uniform draw → one token.
 *
 * Order of operations (vLLM's): logit_bias → repetition penalty → frequency/presence penalties →
 * (greedy when temperature is 0) → temperature → min_p / top_k / top_p → inverse-CDF draw with `u`.
 * min_p and top_k each keep a prefix of the tokens ranked by logit, so they commute; top_p is taken
 * last, on the distribution renormalised over what they kept.
 *
 * Logprobs (OpenAI's `logprobs` / `top_logprobs`): log-softmax of the logits after bias and penalties,
 * before temperature and truncation (temperature 1, whole vocabulary). They describe what the model,
 * under this request's bias and penalties, thought of each token, independent of how the draw was
 * shaped, so they stay comparable between requests; a token banned by logit_bias shows as very unlikely.
 *
 * Cost per token on a 100k vocabulary: never a full sort. Greedy and top_k scan the row once (a bounded
 * heap for top_k); top_p without top_k needs the exact normaliser, so it exponentiates every logit once
 * while filling a histogram of probability mass by distance from the max, then sorts only the few tokens
 * in the fine bucket where the mass crosses top_p. Penalties touch only tokens already seen.
 * The hot path allocates nothing but the result: scratch (~3.5 MB at 100k) lives in the Sampler, one per
 * step loop, and a request's logit_bias object is compiled once (treat it as immutable).
 */
import { MAX_TOP_LOGPROBS, VOCAB_SIZE } from "../../shared/limits.ts";
import type { PreselectedCandidates } from "../runner/step-runner.ts";
import { applyBiasAndPenalties } from "./logit-adjustments.ts";

export interface SamplingParams {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  repetitionPenalty: number;
  /** token id → value added to its logit before anything else. */
  logitBias: Record<number, number>;
  topLogprobs: number;
  logprobs: boolean;
}

export interface SampleResult {
  token: number;
  /** log-softmax of the chosen token (see the file comment); NaN when logprobs were not asked for. */
  logprob: number;
  /** the `topLogprobs` most likely tokens, most likely first (ties: lower id first); null without logprobs. */
  top: Array<{ token: number; logprob: number }> | null;
}

/** The defaults of PHI4.md: plain sampling at temperature 1. */
export const DEFAULT_SAMPLING: Readonly<SamplingParams> = Object.freeze({
  temperature: 1, topP: 1, topK: 0, minP: 0, presencePenalty: 0, frequencyPenalty: 0,
  repetitionPenalty: 1, logitBias: Object.freeze({}) as Record<number, number>, topLogprobs: 0, logprobs: false,
});

/**
 * What the penalties need to know about one sequence: the prompt's tokens (repetition_penalty) and how
 * often each token has been generated so far (all three). Sparse: the cost of applying penalties is
 * proportional to the distinct tokens seen, never to the vocabulary.
 */
export class TokenCounts {
  /** distinct generated token ids, in first-seen order; `generatedCounts[i]` is how often `generatedIds[i]` occurs. */
  generatedIds = new Int32Array(16);
  generatedCounts = new Int32Array(16);
  distinctGenerated = 0;
  totalGenerated = 0;
  private readonly slot = new Map<number, number>();
  private readonly prompt: ArrayLike<number>;
  /** built on first use: only repetition_penalty needs the prompt's distinct tokens. */
  private promptSet: Set<number> | null;
  /** distinct tokens of prompt ∪ generated, once built. */
  private presentIds: Int32Array | null = null;
  private presentCount = 0;

  constructor(promptTokens: ArrayLike<number>, sharedPromptSet: Set<number> | null = null) {
    this.prompt = promptTokens;
    this.promptSet = sharedPromptSet;
  }

  /** Counts one generated token (also for tokens replayed on resume). */
  add(token: number): void {
    const at = this.slot.get(token);
    this.totalGenerated++;
    if (at !== undefined) {
      this.generatedCounts[at]++;
      return;
    }
    if (this.distinctGenerated === this.generatedIds.length) {
      this.generatedIds = grow(this.generatedIds);
      this.generatedCounts = grow(this.generatedCounts);
    }
    const i = this.distinctGenerated++;
    this.generatedIds[i] = token;
    this.generatedCounts[i] = 1;
    this.slot.set(token, i);
    if (this.presentIds !== null && !this.promptSet!.has(token)) this.pushPresent(token);
  }

  /** How often `token` has been generated. */
  count(token: number): number {
    const at = this.slot.get(token);
    return at === undefined ? 0 : this.generatedCounts[at];
  }

  /** A fresh state for another choice of the same prompt (n > 1): shares the prompt's token set, no generated tokens. */
  forSibling(): TokenCounts {
    return new TokenCounts(this.prompt, this.promptSet);
  }

  /** Distinct tokens present in the prompt or the output (for repetition_penalty); the array is longer than `presentLength()`. */
  present(): Int32Array {
    if (this.presentIds === null) this.buildPresent();
    return this.presentIds!;
  }

  presentLength(): number {
    if (this.presentIds === null) this.buildPresent();
    return this.presentCount;
  }

  private buildPresent(): void {
    if (this.promptSet === null) {
      const set = new Set<number>();
      for (let i = 0; i < this.prompt.length; i++) set.add(this.prompt[i]);
      this.promptSet = set;
    }
    this.presentIds = new Int32Array(Math.max(16, this.promptSet.size + this.distinctGenerated));
    for (const token of this.promptSet) this.presentIds[this.presentCount++] = token;
    for (let i = 0; i < this.distinctGenerated; i++) {
      const token = this.generatedIds[i];
      if (!this.promptSet.has(token)) this.pushPresent(token);
    }
  }

  private pushPresent(token: number): void {
    if (this.presentCount === this.presentIds!.length) this.presentIds = grow(this.presentIds!);
    this.presentIds![this.presentCount++] = token;
  }
}

function grow(a: Int32Array): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

// --- exp on the hot path -------------------------------------------------------------------------------
// Math.exp costs ~15 ns in V8; sampling needs exp(d) only for d ≤ 0 (distance below the max, scaled by
// temperature), so a table of 2^(-j/256) and a 4th-degree polynomial on |r| < ln2/256 give relative error
// below 1e-14 at ~4 ns. Below d = -50 the weight (< 2e-22 of the max's) is taken as 0: a whole vocabulary
// of such tokens moves the normaliser by less than one double ulp.
const EXP_FLOOR = -50;
const EXP_STEPS = 256;
const EXP_SCALE = EXP_STEPS / Math.LN2;
const EXP_STEP = Math.LN2 / EXP_STEPS;
const POW2_TABLE = (() => {
  const t = new Float64Array(Math.ceil(-EXP_FLOOR * EXP_SCALE) + 2);
  for (let j = 0; j < t.length; j++) t[j] = Math.pow(2, -j / EXP_STEPS);
  return t;
})();

/** e^d for d ≤ 0; 0 below -50 (and for NaN). */
export function expNonPositive(d: number): number {
  if (!(d > EXP_FLOOR)) return 0;
  const k = (d * -EXP_SCALE) | 0; // table steps below 0, an int ≥ 0 (never -0, which would not be a small int)
  const r = d + k * EXP_STEP;
  return POW2_TABLE[k] * (1 + r * (1 + r * (0.5 + r * (0.16666666666666666 + r * 0.041666666666666664))));
}

// --- ranking keys ------------------------------------------------------------------------------------
// A candidate is one double: (order of its float32 logit, descending) · 2^ID_BITS + id. Ascending keys are
// "higher logit first, lower id first on ties", so ranking needs no comparator and no objects.
const ID_BITS = 21;
const ID_SPAN = 2 ** ID_BITS;
const bitsF32 = new Float32Array(1);
const bitsU32 = new Uint32Array(bitsF32.buffer);

function rankKey(logit: number, id: number): number {
  bitsF32[0] = logit;
  const b = bitsU32[0];
  // IEEE order → unsigned order: flip all bits of negatives, set the sign bit of positives; then invert for descending.
  const ordered = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
  return (0xffffffff - ordered) * ID_SPAN + id;
}

function keyId(key: number): number {
  return key % ID_SPAN;
}

/** Max-heap on keys (root = worst kept candidate). */
function siftDown(h: Float64Array, start: number, size: number): void {
  let i = start;
  const v = h[i];
  for (;;) {
    let c = 2 * i + 1;
    if (c >= size) break;
    if (c + 1 < size && h[c + 1] > h[c]) c++;
    if (h[c] <= v) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = v;
}

function siftUp(h: Float64Array, at: number): void {
  let i = at;
  const v = h[i];
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p] >= v) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = v;
}

/** Sorts h[0..n) ascending in place (heapsort: no recursion, no allocation). */
function sortKeys(h: Float64Array, n: number): void {
  for (let i = (n >> 1) - 1; i >= 0; i--) siftDown(h, i, n);
  for (let end = n - 1; end > 0; end--) {
    const t = h[0];
    h[0] = h[end];
    h[end] = t;
    siftDown(h, 0, end);
  }
}

/**
 * top_p histogram: buckets of 1/4 bit below the max (64 exp-table steps), each split into 64 fine ones.
 * Each bucket is 4 lanes (token id mod 4) summed at the end: consecutive tokens mostly land in the same
 * bucket, and one accumulator per bucket would make every add wait for the previous one (~3x slower).
 */
const FINE_BITS = 6;
const FINE_BUCKETS = 1 << FINE_BITS;
const HIST_BUCKETS = (POW2_TABLE.length >> FINE_BITS) + 1;
const LANES = 4;
/** The step of a token outside the distribution (weight 0): beyond every bucket. */
const EXCLUDED = 0x7fffffff;

function laneSum(hist: Float64Array, bucket: number): number {
  const at = bucket * LANES;
  return hist[at] + hist[at + 1] + hist[at + 2] + hist[at + 3];
}

/**
 * top_p pass 1: weights (0 below min_p), exp-table steps (k: e^d = 2^(-k/256)·e^r) and the mass histogram
 * (bucket k / 64, 4 lanes); returns the total weight.
 */
function weighNucleus(
  row: Float32Array, offset: number, vocab: number, max: number, invT: number, minP: number,
  weights: Float64Array, steps: Int32Array, hist: Float64Array,
): number {
  hist.fill(0);
  let total = 0;
  for (let i = 0, j = offset; i < vocab; i++, j++) {
    // expNonPositive, inlined to keep its table index k.
    const d = (row[j] - max) * invT;
    if (!(d > EXP_FLOOR)) {
      weights[i] = 0;
      steps[i] = EXCLUDED;
      continue;
    }
    const k = (d * -EXP_SCALE) | 0;
    const r = d + k * EXP_STEP;
    const w = POW2_TABLE[k] * (1 + r * (1 + r * (0.5 + r * (0.16666666666666666 + r * 0.041666666666666664))));
    if (w < minP) {
      weights[i] = 0;
      steps[i] = EXCLUDED;
      continue;
    }
    weights[i] = w;
    steps[i] = k;
    total += w;
    hist[((k >> FINE_BITS) << 2) | (i & 3)] += w;
  }
  return total;
}

/**
 * top_p pass 2: tokens in buckets above the boundary go to the nucleus (`inner`, by id); the boundary
 * bucket's tokens are set aside in `edge` with their fine bucket, counted in the fine histogram.
 * Writes [inner count, inner mass] to `out` and returns the number of boundary tokens.
 */
function splitAtBoundary(
  weights: Float64Array, steps: Int32Array, vocab: number, boundary: number,
  inner: Int32Array, edge: Int32Array, edgeFine: Uint8Array, fine: Float64Array, out: Float64Array,
): number {
  fine.fill(0);
  let nInner = 0;
  let nEdge = 0;
  let innerMass = 0;
  for (let i = 0; i < vocab; i++) {
    const step = steps[i];
    const b = step >> FINE_BITS;
    if (b < boundary) {
      inner[nInner++] = i;
      innerMass += weights[i];
    } else if (b === boundary) {
      const f = step & (FINE_BUCKETS - 1);
      edgeFine[nEdge] = f;
      edge[nEdge++] = i;
      fine[(f << 2) | (i & 3)] += weights[i];
    }
  }
  out[0] = nInner;
  out[1] = innerMass;
  return nEdge;
}

/** The first bucket at which `above` plus the mass of the buckets so far reaches `nucleus` (the last if none). */
function crossingBucket(hist: Float64Array, buckets: number, above: number, nucleus: number): number {
  let b = 0;
  for (; b < buckets - 1; b++) {
    const mass = laneSum(hist, b);
    if (above + mass >= nucleus) break;
    above += mass;
  }
  return b;
}

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

/** Continues a full bounded heap of `size` keys over row[from..end): better logits replace the worst kept. */
function scanForBetter(row: Float32Array, offset: number, from: number, end: number, heap: Float64Array, size: number): void {
  let worst = row[offset + keyId(heap[0])];
  for (let j = from; j < end; j++) {
    const x = row[j];
    // Equal logits lose to the kept one: it has the lower id.
    if (x > worst) {
      heap[0] = rankKey(x, j - offset);
      siftDown(heap, 0, size);
      worst = row[offset + keyId(heap[0])];
    }
  }
}

/**
 * The k highest logits of row[offset..offset+vocab) as ranking keys in heap[0..n), sorted best first
 * (ties: lower id first; NaN never kept). One pass: a bounded max-heap of keys whose root is the worst
 * kept candidate; most logits fail one comparison against it.
 */
function selectBest(row: Float32Array, offset: number, vocab: number, k: number, heap: Float64Array): number {
  if (k <= 0) return 0;
  const end = offset + vocab;
  let j = offset;
  let size = 0;
  for (; j < end && size < k; j++) {
    const x = row[j];
    if (x !== x) continue;
    heap[size] = rankKey(x, j - offset);
    siftUp(heap, size++);
  }
  if (size === k) scanForBetter(row, offset, j, end, heap, size);
  sortKeys(heap, size);
  return size;
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
  /** candidate keys (top_k heap, top_p survivors), then their cumulative weights. */
  private readonly keys: Float64Array;
  private readonly cumulative: Float64Array;
  /** top_p without top_k: every token's weight, and the ids inside the nucleus's inner buckets. */
  private readonly weights: Float64Array;
  /** exp-table steps (1/256 bit) below the max, per token, for the top_p buckets. */
  private readonly steps: Int32Array;
  private readonly innerIds: Int32Array;
  private readonly edgeIds: Int32Array;
  private readonly edgeFine: Uint8Array;
  private readonly fineHistogram = new Float64Array(FINE_BUCKETS * LANES);
  private readonly histogram = new Float64Array(HIST_BUCKETS * LANES);
  private readonly topHeap = new Float64Array(MAX_TOP_LOGPROBS);
  /** Σ exp(x - max) over the row when the draw computed it at temperature 1 (else NaN), for logprobs. */
  private fullTotal = NaN;
  /** top_p passes: how many tokens are in the nucleus's inner part so far, and their mass. */
  private nInner = 0;
  private innerMass = 0;
  private readonly split = new Float64Array(2);

  constructor(vocabSize: number = VOCAB_SIZE) {
    if (vocabSize > ID_SPAN) throw new RangeError(`vocabulary of ${vocabSize} exceeds ${ID_SPAN}`);
    this.vocabSize = vocabSize;
    this.keys = new Float64Array(vocabSize);
    this.cumulative = new Float64Array(vocabSize);
    this.weights = new Float64Array(vocabSize);
    this.innerIds = new Int32Array(vocabSize);
    this.steps = new Int32Array(vocabSize);
    this.edgeIds = new Int32Array(vocabSize);
    this.edgeFine = new Uint8Array(vocabSize);
  }

  /**
   * Samples one token from logits[offset .. offset + vocabSize) (one row of the engine's [rows × vocab]
   * buffer). The row is MODIFIED IN PLACE (bias and penalties are written into it). `u` is the uniform
   * draw in [0, 1) for this token (prng.ts); greedy decoding ignores it. `counts` is the sequence's state;
   * the caller adds the chosen token to it afterwards.
   */
  sample(logits: Float32Array, offset: number, params: SamplingParams, counts: TokenCounts, u: number): SampleResult {
    if (offset < 0 || offset + this.vocabSize > logits.length) throw new RangeError(`row at ${offset} lies outside the logits buffer`);
    applyBiasAndPenalties(logits, offset, this.vocabSize, params, counts);
    return this.draw(logits, offset, params, u, null, 0);
  }

  /**
   * Draws one token from a row that bias, penalties and any constraint were already applied to
   * (logit-adjustments.ts). With `candidates` (this buffer's rows ranked after those adjustments;
   * `candidateRow` is this row's index in them), rows that drawsFromCandidates allows read the ranked
   * candidates instead of scanning the row; the result is the same token and logprobs.
   */
  draw(
    logits: Float32Array, offset: number, params: SamplingParams, u: number,
    candidates: PreselectedCandidates | null = null, candidateRow = 0,
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
    const lse = preselected && candidates.logSumExp !== null ? candidates.logSumExp[candidateRow] : NaN;
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

  /**
   * top_p over the whole vocabulary. Pass 1: exact weights and their total, plus a histogram of mass by
   * distance below the max in steps of 1/4 bit, read off the exponent the exp already computes. Buckets
   * wholly inside the top_p mass are in the nucleus as they are; the bucket where the mass crosses
   * top_p splits into 64 finer ones (1/256 bit), and only the fine bucket where it crosses is ranked
   * (sorted) to place the exact cut. The draw walks the nucleus in that order: inner tokens by id, then
   * the ranked tokens best first. (Each pass is its own small function: V8 optimises them separately.)
   */
  private drawNucleus(row: Float32Array, offset: number, max: number, p: SamplingParams, u: number): number {
    const total = weighNucleus(row, offset, this.vocabSize, max, 1 / p.temperature, p.minP, this.weights, this.steps, this.histogram);
    if (p.temperature === 1 && p.minP === 0) this.fullTotal = total;
    const nucleus = p.topP * total;
    const boundary = crossingBucket(this.histogram, HIST_BUCKETS, 0, nucleus);
    const nEdge = splitAtBoundary(
      this.weights, this.steps, this.vocabSize, boundary, this.innerIds, this.edgeIds, this.edgeFine, this.fineHistogram, this.split,
    );
    this.nInner = this.split[0];
    this.innerMass = this.split[1];
    const cross = crossingBucket(this.fineHistogram, FINE_BUCKETS, this.innerMass, nucleus);
    const nRanked = this.rankCrossing(row, offset, nEdge, cross);
    const keys = this.keys;
    const weights = this.weights;
    const inner = this.innerIds;
    const nInner = this.nInner;
    // Keep a ranked token while the mass ranked above it is below top_p (vLLM's rule).
    let mass = this.innerMass;
    let kept = 0;
    while (kept < nRanked && (mass < nucleus || (kept === 0 && nInner === 0))) mass += weights[keyId(keys[kept++])];

    const target = u * mass;
    let cum = 0;
    for (let j = 0; j < nInner; j++) {
      cum += weights[inner[j]];
      if (cum > target) return inner[j];
    }
    for (let j = 0; j < kept; j++) {
      cum += weights[keyId(keys[j])];
      if (cum > target) return keyId(keys[j]);
    }
    return kept > 0 ? keyId(keys[kept - 1]) : inner[nInner - 1];
  }

  /** top_p pass 3, on the boundary tokens only: finer buckets above the crossing join the nucleus; the crossing one is ranked. */
  private rankCrossing(row: Float32Array, offset: number, nEdge: number, cross: number): number {
    const weights = this.weights;
    const inner = this.innerIds;
    const edge = this.edgeIds;
    const edgeFine = this.edgeFine;
    const keys = this.keys;
    let nInner = this.nInner;
    let innerMass = this.innerMass;
    let nRanked = 0;
    for (let j = 0; j < nEdge; j++) {
      const f = edgeFine[j];
      const id = edge[j];
      if (f < cross) {
        inner[nInner++] = id;
        innerMass += weights[id];
      } else if (f === cross) {
        keys[nRanked++] = rankKey(row[offset + id], id);
      }
    }
    sortKeys(keys, nRanked);
    this.nInner = nInner;
    this.innerMass = innerMass;
    return nRanked;
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
    let z = 0;
    const end = offset + this.vocabSize;
    for (let j = offset; j < end; j++) z += expNonPositive(row[j] - max);
    return z;
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
