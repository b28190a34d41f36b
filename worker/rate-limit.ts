/**
 * Per-key admission: requests per minute, tokens per minute and concurrent streams, decided in one
 * atomic Lua script so concurrent requests cannot both take the last slot. Fixed one-minute windows.
 * Tokens are estimated at admission (prompt estimate + the most the request may generate) and
 * reconciled with the node's real usage when the request finishes.
 */
import { ApiError } from "../shared/errors.ts";
import type { RedisKeys } from "../shared/redis-keys.ts";
import type { RateLimits } from "./env.ts";
import type { RedisClient } from "./redis.ts";

const WINDOW_MS = 60_000;
/** A stream that never released its slot (a Worker killed mid-stream) stops counting after this. */
export const CONCURRENCY_LEASE_MS = 30 * 60_000;

// KEYS: rpm window, tpm window, concurrency set. ARGV: rpm limit, tpm limit, concurrent limit,
// estimated tokens, now ms, completion id, lease expiry ms, window ttl s.
// Returns 0 (admitted), 1 (rpm), 2 (tpm), 3 (concurrency).
const ADMIT = `
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
local rpm = tonumber(redis.call('GET', KEYS[1]) or '0')
if rpm + 1 > tonumber(ARGV[1]) then return 1 end
local tpm = tonumber(redis.call('GET', KEYS[2]) or '0')
if tpm + tonumber(ARGV[4]) > tonumber(ARGV[2]) then return 2 end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return 3 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('INCRBY', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ${CONCURRENCY_LEASE_MS})
return 0
`;

export interface Admission {
  /** The minute window the tokens were charged to, for reconciliation. */
  window: number;
  estimatedTokens: number;
}

export async function admit(
  redis: RedisClient, keys: RedisKeys, keyHash: string, limits: RateLimits,
  completionId: string, estimatedTokens: number, nowMs = Date.now(),
): Promise<Admission> {
  const window = Math.floor(nowMs / WINDOW_MS);
  const verdict = await redis.eval(
    ADMIT, 3,
    keys.rateWindow(keyHash, "rpm", window), keys.rateWindow(keyHash, "tpm", window), keys.concurrency(keyHash),
    limits.rpm, limits.tpm, limits.concurrent, estimatedTokens, nowMs, completionId, nowMs + CONCURRENCY_LEASE_MS, 120,
  ) as number;
  if (verdict === 0) return { window, estimatedTokens };
  const untilNextWindow = ((window + 1) * WINDOW_MS - nowMs) / 1000;
  if (verdict === 1) throw rateLimited(`Rate limit reached: ${limits.rpm} requests per minute.`, "rate_limit_requests", untilNextWindow);
  if (verdict === 2) throw rateLimited(`Rate limit reached: ${limits.tpm} tokens per minute (prompt estimate plus max_tokens).`, "rate_limit_tokens", untilNextWindow);
  throw rateLimited(`Too many concurrent requests: at most ${limits.concurrent} at a time.`, "rate_limit_concurrency", 1);
}

function rateLimited(message: string, code: string, retryAfterS: number): ApiError {
  return new ApiError(429, "rate_limit_error", message, code, null, Math.max(1, Math.ceil(retryAfterS)));
}

/** Frees the request's concurrency slot; with real usage, corrects the token charge of its window. */
export async function release(
  redis: RedisClient, keys: RedisKeys, keyHash: string, completionId: string,
  admission: Admission, actualTokens: number | null,
): Promise<void> {
  const pipeline = redis.multi().zrem(keys.concurrency(keyHash), completionId);
  if (actualTokens !== null && actualTokens !== admission.estimatedTokens) {
    const tpmKey = keys.rateWindow(keyHash, "tpm", admission.window);
    // Only correct a window that still exists (INCRBY on an expired key would recreate it forever).
    pipeline.eval(
      "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end return 0",
      1, tpmKey, actualTokens - admission.estimatedTokens,
    );
  }
  await pipeline.exec();
}
