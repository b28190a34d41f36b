/**
 * The per-request random source: a counter-based generator (Philox4x32-10, Salmon et al., SC'11).
 *
 * Every sampled token draws `uniform(seed, choiceIndex, step)`: a pure function of the request's seed,
 * which of its `n` choices is sampling, and how many tokens that choice has generated before. There is
 * no state to advance, so a sequence's draws do not depend on which other sequences share its batch,
 * and a resumed request continues exactly where it left off by starting at `step = tokens already made`.
 *
 * Philox needs only 32-bit multiplies, xors and adds, so it runs on plain JS numbers (no BigInt on the
 * hot path: `seedWords` splits the seed once per request, `uniformFromWords` is the per-token call).
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const ROUNDS = 10;

const TWO_POW_26 = 67_108_864;
const TWO_POW_MINUS_53 = 1 / 9_007_199_254_740_992;

/** Seeds are 0 ≤ s < 2^63 (docs/api.md). */
export const SEED_LIMIT = 1n << 63n;

/** High 32 bits of the 64-bit product of two uint32s, exactly, in doubles (each partial product < 2^53). */
function mulHi(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const cross = ah * bl + al * bh + ((al * bl) >>> 16);
  return (ah * bh + Math.floor(cross / 65_536)) >>> 0;
}

/**
 * The Philox4x32-10 block function: counter (c0..c3) and key (k0, k1) → four uint32 words written to `out`.
 * Exported so its known-answer vectors (Random123's kat_vectors) can be checked.
 */
export function philox4x32(
  c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array,
): void {
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulHi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulHi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

const block = new Uint32Array(4);

/** A seed as the two 32-bit key words Philox takes: [low, high]. Call once per request. */
export function seedWords(seed: bigint): [number, number] {
  if (seed < 0n || seed >= SEED_LIMIT) throw new RangeError(`seed must be 0 ≤ s < 2^63, got ${seed}`);
  return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
}

/**
 * The uniform draw in [0, 1) with 53 random bits for (seed, choice, step), the seed given as its key words.
 * Counter = (step, choiceIndex, 0, 0); key = (seedLo, seedHi).
 */
export function uniformFromWords(seedLo: number, seedHi: number, choiceIndex: number, step: number): number {
  philox4x32(step >>> 0, choiceIndex >>> 0, 0, 0, seedLo >>> 0, seedHi >>> 0, block);
  return ((block[0] >>> 5) * TWO_POW_26 + (block[1] >>> 6)) * TWO_POW_MINUS_53;
}

/** The uniform draw in [0, 1) with 53 random bits for token `step` of choice `choiceIndex` of a request. */
export function uniform(seed: bigint, choiceIndex: number, step: number): number {
  const [lo, hi] = seedWords(seed);
  return uniformFromWords(lo, hi, choiceIndex, step);
}

/** A fresh seed 0 ≤ s < 2^63 for a request that brought none; the engine records it so the run can be replayed. */
export function drawSeed(): bigint {
  const words = new BigUint64Array(1);
  globalThis.crypto.getRandomValues(words);
  return words[0] & (SEED_LIMIT - 1n);
}

/** The request's seed (a decimal string, or null = draw one) as the bigint the generator takes. */
export function requestSeed(seed: string | null): bigint {
  if (seed === null) return drawSeed();
  if (!/^(0|[1-9][0-9]*)$/.test(seed)) throw new RangeError(`seed must be a decimal integer, got ${JSON.stringify(seed)}`);
  const value = BigInt(seed);
  if (value >= SEED_LIMIT) throw new RangeError(`seed must be below 2^63, got ${seed}`);
  return value;
}
