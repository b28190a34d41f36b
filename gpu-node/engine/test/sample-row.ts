/**
 * One row sampled on its own, as the engine's StepSampler would (bias and penalties into the row, then
 * the draw), without a batch or the preselector: the reference the sampler tests and the sampler
 * benchmark call.
 */
import { applyBiasAndPenalties } from "../logit-adjustments.ts";
import type { Sampler } from "../sampler.ts";
import type { SampleResult, SamplingParams } from "../sampling-params.ts";
import type { TokenCounts } from "../token-counts.ts";

/**
 * Samples one token from logits[offset .. offset + vocabSize), which is MODIFIED IN PLACE (bias and
 * penalties are written into it). `u` is the uniform draw in [0, 1) (prng.ts); `counts` is the
 * sequence's penalty state, to which the caller adds the chosen token.
 */
export function sampleRow(
  sampler: Sampler, logits: Float32Array, offset: number, params: SamplingParams, counts: TokenCounts, u: number,
): SampleResult {
  if (offset < 0 || offset + sampler.vocabSize > logits.length) throw new RangeError(`row at ${offset} lies outside the logits buffer`);
  applyBiasAndPenalties(logits, offset, sampler.vocabSize, params, counts);
  return sampler.draw(logits, offset, params, u);
}
