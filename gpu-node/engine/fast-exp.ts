/**
 * exp on the sampler's hot path. Math.exp costs ~15 ns in V8; sampling needs exp(d) only for d ≤ 0
 * (distance below the max, scaled by temperature), so a table of 2^(-j/256) and a 4th-degree polynomial
 * on |r| < ln2/256 give relative error below 1e-14 at ~4 ns. Below d = -50 the weight (< 2e-22 of the
 * max's) is taken as 0: a whole vocabulary of such tokens moves the normaliser by less than one double ulp.
 */

// Module-private on purpose: V8 reads an exported binding through a cell with a TDZ check on every
// access, which made these loops 1.5x slower. Other modules get them through `expTable`.
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

/**
 * The table behind expNonPositive, for loops that inline it to keep the table index k (e^d =
 * 2^(-k/256)·e^r): copy the fields into locals before the loop.
 */
export const expTable: Readonly<{ floor: number; scale: number; step: number; pow2: Float64Array }> = Object.freeze({
  floor: EXP_FLOOR, scale: EXP_SCALE, step: EXP_STEP, pow2: POW2_TABLE,
});
