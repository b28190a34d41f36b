/** Limits every layer agrees on (../shared/PHI4.md). The Worker validates against them, the node enforces them. */

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
/** Seeds are 0 ≤ s < 2^63 (PHI4.md). */
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
