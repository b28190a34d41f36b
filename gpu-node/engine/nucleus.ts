/**
 * top_p over the whole vocabulary (no top_k to bound it) in three passes and no full sort. Pass 1: exact
 * weights and their total, plus a histogram of mass by distance below the max in steps of 1/4 bit, read
 * off the exponent the exp already computes. Buckets wholly inside the top_p mass are in the nucleus as
 * they are; pass 2 splits the bucket where the mass crosses top_p into 64 finer ones (1/256 bit), and
 * pass 3 ranks (sorts) only the tokens of the fine bucket where it crosses, to place the exact cut.
 */
import { expTable } from "./fast-exp.ts";
import { keyId, rankKey, sortKeys } from "./ranking-heap.ts";
import type { SamplingParams } from "./sampling-params.ts";

/**
 * top_p histogram: buckets of 1/4 bit below the max (64 exp-table steps), each split into 64 fine ones.
 * Each bucket is 4 lanes (token id mod 4) summed at the end: consecutive tokens mostly land in the same
 * bucket, and one accumulator per bucket would make every add wait for the previous one (~3x slower).
 */
const FINE_BITS = 6;
const FINE_BUCKETS = 1 << FINE_BITS;
const HIST_BUCKETS = (expTable.pow2.length >> FINE_BITS) + 1;
// Module-private copies of the exp table (fast-exp.ts) for the inlined exp of pass 1.
const EXP_FLOOR = expTable.floor;
const EXP_SCALE = expTable.scale;
const EXP_STEP = expTable.step;
const POW2_TABLE = expTable.pow2;
const LANES = 4;
/** The step of a token outside the distribution (weight 0): beyond every bucket. */
const EXCLUDED = 0x7fffffff;

// Each pass is a function of its own that ends right after its loop (see the V8 note in sampler.ts).

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

/**
 * The draw: the first token, walking the nucleus in pass order (inner tokens by id, then the ranked ones
 * best first), at which the cumulative weight passes `target`; the last one when rounding leaves none.
 */
function walkNucleus(weights: Float64Array, inner: Int32Array, nInner: number, keys: Float64Array, kept: number, target: number): number {
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

/** The nucleus draw and its scratch (~2.5 MB at 100k tokens); one per Sampler, sharing its key buffer. */
export class NucleusSampler {
  /** Σ weights over the row at the last draw (the softmax normaliser when temperature is 1 and min_p 0). */
  total = NaN;
  /** Every token's weight, and its exp-table step (1/256 bit) below the max. */
  private readonly weights: Float64Array;
  private readonly steps: Int32Array;
  /** Ids inside the nucleus's inner buckets; the boundary bucket's ids and their fine buckets. */
  private readonly innerIds: Int32Array;
  private readonly edgeIds: Int32Array;
  private readonly edgeFine: Uint8Array;
  private readonly fineHistogram = new Float64Array(FINE_BUCKETS * LANES);
  private readonly histogram = new Float64Array(HIST_BUCKETS * LANES);
  /** How many tokens are in the nucleus's inner part so far, and their mass. */
  private nInner = 0;
  private innerMass = 0;
  private readonly split = new Float64Array(2);

  constructor(
    private readonly vocabSize: number,
    /** The ranked fine bucket's keys go here (the sampler's candidate buffer, free during this draw). */
    private readonly keys: Float64Array,
  ) {
    this.weights = new Float64Array(vocabSize);
    this.innerIds = new Int32Array(vocabSize);
    this.steps = new Int32Array(vocabSize);
    this.edgeIds = new Int32Array(vocabSize);
    this.edgeFine = new Uint8Array(vocabSize);
  }

  /**
   * Draws from the nucleus of row[offset .. offset + vocabSize) (`max` is its largest logit). Each pass
   * is its own small function: V8 optimises them separately.
   */
  draw(row: Float32Array, offset: number, max: number, p: SamplingParams, u: number): number {
    const total = weighNucleus(row, offset, this.vocabSize, max, 1 / p.temperature, p.minP, this.weights, this.steps, this.histogram);
    this.total = total;
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

    return walkNucleus(weights, inner, nInner, keys, kept, u * mass);
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
}
