/**
 * Per-key admission: requests per minute, tokens per minute and concurrent streams, decided in one
 * atomic Lua script so concurrent requests cannot both take the last slot. Fixed one-minute windows.
 * Tokens are estimated at admission (prompt estimate + the most the request may generate) and
 * reconciled with the node's real usage when the request finishes.
 *
 * A concurrency slot is a lease (a member of the key's sorted set scored by its expiry): the relay
 * renews it while it runs, so a long completion keeps it and a Worker that died frees it by itself.
 */
import { ApiError } from "../shared/errors.ts";
import type { RedisKeys } from "../shared/redis-keys.ts";
import type { RateLimits } from "./env.ts";
import type { RedisClient } from "./redis.ts";

const WINDOW_MS = 60_000;

// KEYS: rpm window, tpm window, concurrency set. ARGV: rpm limit, tpm limit, concurrent limit,
// estimated tokens, now ms, slot member, lease expiry ms, window ttl s, lease ms.
// Returns 0 (admitted), 1 (rpm), 2 (tpm), 3 (concurrency). A slot already held (a resume taking over
// its generation's) needs no room of its own.
const ADMIT = `
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
local rpm = tonumber(redis.call('GET', KEYS[1]) or '0')
if rpm + 1 > tonumber(ARGV[1]) then return 1 end
local tpm = tonumber(redis.call('GET', KEYS[2]) or '0')
if tpm + tonumber(ARGV[4]) > tonumber(ARGV[2]) then return 2 end
if not redis.call('ZSCORE', KEYS[3], ARGV[6]) and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return 3 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('INCRBY', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[9])
return 0
`;

// KEYS: concurrency set. ARGV: new expiry ms, set ttl ms, members. Only slots still held are
// extended (XX): one that already expired may have been let to another request.
const RENEW = `
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
`;

// KEYS: concurrency set, tpm window. ARGV: member, token correction. The correction applies only when
// this call freed the slot, so any number of releases of one slot reconcile once; and only to a
// window that still exists (INCRBY on an expired key would recreate it forever).
const RELEASE = `
local freed = redis.call('ZREM', KEYS[1], ARGV[1])
if freed == 1 and ARGV[2] ~= '0' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], ARGV[2]) end
return freed
`;

export interface Admission {
  /** The minute window the tokens were charged to, for reconciliation. */
  window: number;
  estimatedTokens: number;
}

/** What one admission charges: the key, its limits, the slot's name and the tokens estimated. */
export interface Charge {
  keyHash: string;
  limits: RateLimits;
  /** The concurrency slot's member: the completion id for a request, a distinct one per resume. */
  slot: string;
  estimatedTokens: number;
  leaseMs: number;
}

export async function admit(redis: RedisClient, keys: RedisKeys, charge: Charge, nowMs = Date.now()): Promise<Admission> {
  const { keyHash, limits, slot, estimatedTokens, leaseMs } = charge;
  const window = Math.floor(nowMs / WINDOW_MS);
  const verdict = await redis.eval(
    ADMIT, 3,
    keys.rateWindow(keyHash, "rpm", window), keys.rateWindow(keyHash, "tpm", window), keys.concurrency(keyHash),
    limits.rpm, limits.tpm, limits.concurrent, estimatedTokens, nowMs, slot, nowMs + leaseMs, 120, leaseMs,
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

/** Extends the key's slots `slots` (those still held) to a full lease from now. */
export async function renewSlots(redis: RedisClient, keys: RedisKeys, keyHash: string, slots: string[], leaseMs: number): Promise<void> {
  await redis.eval(RENEW, 1, keys.concurrency(keyHash), Date.now() + leaseMs, leaseMs, ...slots);
}

/** Frees a concurrency slot; with real usage, corrects the token charge of its window (once). */
export async function release(
  redis: RedisClient, keys: RedisKeys, keyHash: string, slot: string,
  admission: Admission, actualTokens: number | null,
): Promise<void> {
  const correction = actualTokens === null ? 0 : actualTokens - admission.estimatedTokens;
  await redis.eval(RELEASE, 2, keys.concurrency(keyHash), keys.rateWindow(keyHash, "tpm", admission.window), slot, correction);
}
