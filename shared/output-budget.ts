/**
 * How much output a request may produce, checked before it is queued (limits in ./limits.ts). Sizes
 * are estimates per generated token, on the generous side of what the node writes and the edge sends:
 * a delta entry or chunk, plus each logprob object and its top_logprobs alternatives.
 */
import { ApiError } from "./errors.ts";
import { CONTEXT_LENGTH, MAX_REQUEST_OUTPUT_TOKENS, NON_STREAMED_BUDGET_BYTES, STREAM_BUDGET_BYTES } from "./limits.ts";

export interface OutputShape {
  n: number;
  maxTokens: number | null;
  logprobs: boolean;
  topLogprobs: number;
  stream: boolean;
}

const STREAM_BYTES_PER_TOKEN = 64;
const TEXT_BYTES_PER_TOKEN = 6;
const LOGPROB_BYTES = 64;
const ALTERNATIVE_BYTES = 56;

function logprobBytes(shape: OutputShape): number {
  return shape.logprobs ? LOGPROB_BYTES + shape.topLogprobs * ALTERNATIVE_BYTES : 0;
}

/** The most tokens the request may generate over all its choices. */
export function outputTokens(shape: OutputShape, promptTokens: number): number {
  return shape.n * (shape.maxTokens ?? Math.max(0, CONTEXT_LENGTH - promptTokens));
}

/** The largest n × max_tokens this shape's logprobs allow in one stream. */
export function outputTokenCap(shape: OutputShape): number {
  return Math.min(MAX_REQUEST_OUTPUT_TOKENS, Math.floor(STREAM_BUDGET_BYTES / (STREAM_BYTES_PER_TOKEN + logprobBytes(shape))));
}

/** The 400 for a request over its output limits, or null. */
export function outputBudgetError(shape: OutputShape, promptTokens: number): ApiError | null {
  const tokens = outputTokens(shape, promptTokens);
  const cap = outputTokenCap(shape);
  if (tokens > cap) {
    const per = shape.maxTokens === null ? "max_tokens unset: the context left after the prompt" : `max_tokens ${shape.maxTokens}`;
    const why = cap < MAX_REQUEST_OUTPUT_TOKENS ? ` with top_logprobs ${shape.topLogprobs}` : "";
    return ApiError.invalid(`n × max_tokens is ${tokens} (n ${shape.n}, ${per}); at most ${cap} tokens may be generated per request${why}. Lower n or max_tokens.`, "max_tokens", "output_limit_exceeded");
  }
  if (!shape.stream && tokens * (TEXT_BYTES_PER_TOKEN + logprobBytes(shape)) > NON_STREAMED_BUDGET_BYTES) {
    return ApiError.invalid(`This response could reach ${Math.ceil(tokens * (TEXT_BYTES_PER_TOKEN + logprobBytes(shape)) / 1_048_576)} MiB, over the ${NON_STREAMED_BUDGET_BYTES / 1_048_576} MiB a non-streamed response may hold. Set stream: true (or lower n, max_tokens or top_logprobs).`, "stream", "response_too_large");
  }
  return null;
}
