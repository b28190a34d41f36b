/** A request's sampling settings as the engine holds them, their defaults, and what one draw returns. */

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
  /** log-softmax of the chosen token (after bias and penalties, before temperature: see sampler.ts); NaN when logprobs were not asked for. */
  logprob: number;
  /** the `topLogprobs` most likely tokens, most likely first (ties: lower id first); null without logprobs. */
  top: Array<{ token: number; logprob: number }> | null;
}

/** The defaults of docs/api.md: plain sampling at temperature 1. */
export const DEFAULT_SAMPLING: Readonly<SamplingParams> = Object.freeze({
  temperature: 1, topP: 1, topK: 0, minP: 0, presencePenalty: 0, frequencyPenalty: 0,
  repetitionPenalty: 1, logitBias: Object.freeze({}) as Record<number, number>, topLogprobs: 0, logprobs: false,
});
