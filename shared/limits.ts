/** Limits every layer agrees on (docs/api.md). The Worker validates against them, the node enforces them. */

export const SERVED_MODEL_ID = "microsoft/phi-4";
export const CONTEXT_LENGTH = 16_384;
export const MAX_OUTPUT_TOKENS = 16_384;
export const VOCAB_SIZE = 100_352;
/** Largest request body the edge accepts (413 above). */
export const MAX_BODY_BYTES = 1_048_576;

export const TEMPERATURE = { min: 0, max: 2, default: 1 } as const;
export const TOP_P = { minExclusive: 0, max: 1, default: 1 } as const;
export const MIN_P = { min: 0, max: 1, default: 0 } as const;
export const TOP_K = { min: 0, max: 999, default: 0 } as const;
export const PENALTY = { min: -2, max: 2, default: 0 } as const;
export const REPETITION_PENALTY = { min: 0.01, max: 5, default: 1 } as const;
/** Seeds are 0 ≤ s < 2^63 (docs/api.md). */
export const SEED_EXCLUSIVE_MAX = 2 ** 63;
export const MAX_STOP_SEQUENCES = 4;
export const MAX_STOP_SEQUENCE_CHARS = 512;
/** Choices per request; each one is a running sequence on a node. */
export const MAX_N = 16;
export const MAX_TOP_LOGPROBS = 20;
export const LOGIT_BIAS = { min: -100, max: 100, maxEntries: 1024 } as const;
export const MAX_MESSAGES = 2048;
export const MAX_USER_ID_CHARS = 256;
/**
 * A job no GPU node has started within this long is dropped with an error event when a node finally
 * takes it (the client has given up long before; the prompt should not linger or be served late).
 */
export const QUEUED_JOB_EXPIRY_SECONDS = 900;

/**
 * Edge leases: a request's concurrency slot is a lease of this length, renewed while the request is
 * relayed (every quarter of it); a Worker that dies mid-stream, or a cleanup that cannot reach Redis,
 * holds the slot for at most this long.
 */
export const CONCURRENCY_LEASE_MS = 60_000;

/**
 * A streaming client that disconnects has this long to resume (`GET .../{id}/events` with
 * `Last-Event-ID`) before its generation is cancelled (edge RESUME_GRACE_MS overrides it).
 */
export const RESUME_GRACE_MS = 10_000;

/**
 * Edge: the longest one relay (a response or a resume) stays open; then a stream ends with an error
 * event that says to resume, and a non-streamed request with 504 (edge RELAY_DEADLINE_MS overrides it).
 */
export const RELAY_DEADLINE_MS = 20 * 60_000;

/**
 * Edge: a write to a streaming client that waits this long counts as the client's disconnect (workerd
 * reports a failed response write no other way). A live client only blocks a write once every buffer on
 * the way is full, so a stall this long means nobody reads; the grace period still lets it resume.
 */
export const STALLED_WRITE_MS = 5_000;
/** Edge: how long `/health` serves its last Redis check before making another. */
export const HEALTH_CACHE_MS = 5_000;

/**
 * Output limits (README "Output limits"), so one request cannot produce unbounded output:
 * - n × max_tokens (max_tokens unset: the context left after the prompt) ≤ MAX_REQUEST_OUTPUT_TOKENS;
 * - the request's stream entries, estimated per token (shared/output-budget.ts), ≤ STREAM_BUDGET_BYTES:
 *   with logprobs each token carries its alternatives, so the token cap tightens as top_logprobs grows;
 * - a non-streamed response, estimated the same way, ≤ NON_STREAMED_BUDGET_BYTES, or 400 "stream it".
 * Nodes enforce MAX_STREAM_ENTRIES where entries are written, whatever a request claimed.
 */
export const MAX_REQUEST_OUTPUT_TOKENS = 65_536;
export const STREAM_BUDGET_BYTES = 16 * 1024 * 1024;
export const NON_STREAMED_BUDGET_BYTES = 4 * 1024 * 1024;
/** One entry per token per choice at most, plus `start` and the final event. */
export const MAX_STREAM_ENTRIES = MAX_REQUEST_OUTPUT_TOKENS + MAX_N + 2;
/** Function tools per request (OpenAI's limit). */
export const MAX_TOOLS = 128;
/** `/v1/completions`: the most alternatives an integer `logprobs` may ask for (OpenAI's limit). */
export const MAX_LEGACY_LOGPROBS = 5;
