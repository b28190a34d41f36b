/**
 * The Worker's bindings and vars (wrangler.toml, .dev.vars, secrets), and the numbers read from them.
 * Vars arrive as strings; they are parsed once per request into EdgeConfig.
 */
import type { KVNamespace } from "@cloudflare/workers-types/latest/index.ts";
import { DEFAULT_REDIS_PREFIX } from "../shared/redis-keys.ts";
import { CONCURRENCY_LEASE_MS, HEALTH_CACHE_MS, RELAY_DEADLINE_MS, RESUME_GRACE_MS, SERVED_MODEL_ID, STALLED_WRITE_MS } from "../shared/limits.ts";
import { pricesFromVars, type Prices } from "../shared/pricing.ts";

export interface WorkerEnv {
  API_KEYS: KVNamespace;
  REDIS_URL?: string;
  REDIS_PREFIX?: string;
  SERVED_MODEL_ID?: string;
  PRICE_INPUT_PER_MTOK?: string;
  PRICE_OUTPUT_PER_MTOK?: string;
  RATE_LIMIT_RPM?: string;
  RATE_LIMIT_TPM?: string;
  RATE_LIMIT_CONCURRENT?: string;
  MAX_QUEUE_DEPTH?: string;
  /** Accepted in addition to the KV keys, only with LOCAL_DEVELOPMENT (development-key.ts). */
  DEV_API_KEY?: string;
  /** "true" only under `wrangler dev` (.dev.vars, the stack starter): enables DEV_API_KEY and a loopback REDIS_URL default. */
  LOCAL_DEVELOPMENT?: string;
  /** How long a streaming response is held back waiting for the first token, so that an early node
   * error can still become an HTTP status (ms; default 10 s, below any client's first-byte timeout). */
  SSE_HOLD_MS?: string;
  /** Interval of SSE keep-alive comments once the stream is open and nothing arrives (ms; default 10 s). */
  SSE_KEEPALIVE_MS?: string;
  /** Length of a concurrency slot's lease, renewed while relaying (ms; default CONCURRENCY_LEASE_MS). */
  CONCURRENCY_LEASE_MS?: string;
  /** How long a disconnected streaming client has to resume before its generation is cancelled (ms). */
  RESUME_GRACE_MS?: string;
  /** How long a response write may wait before the streaming client is taken as gone (ms; default STALLED_WRITE_MS). */
  STALLED_WRITE_MS?: string;
  /** The longest one relay stays open (ms; default RELAY_DEADLINE_MS). */
  RELAY_DEADLINE_MS?: string;
  /** How long `/health` serves its last Redis check (ms; default HEALTH_CACHE_MS; 0 checks every call). */
  HEALTH_CACHE_MS?: string;
}

export interface RateLimits {
  rpm: number;
  tpm: number;
  concurrent: number;
}

export interface EdgeConfig {
  redisUrl: string;
  redisPrefix: string;
  modelId: string;
  prices: Prices;
  defaultLimits: RateLimits;
  maxQueueDepth: number;
  sseHoldMs: number;
  sseKeepAliveMs: number;
  leaseMs: number;
  resumeGraceMs: number;
  stalledWriteMs: number;
  relayDeadlineMs: number;
  healthCacheMs: number;
}

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return value;
}

export function edgeConfig(env: WorkerEnv): EdgeConfig {
  return {
    // Production sets REDIS_URL as a secret; without it there is no queue (openRedis says so), never a guess.
    redisUrl: env.REDIS_URL || (env.LOCAL_DEVELOPMENT === "true" ? "redis://127.0.0.1:6379" : ""),
    redisPrefix: env.REDIS_PREFIX || DEFAULT_REDIS_PREFIX,
    modelId: env.SERVED_MODEL_ID || SERVED_MODEL_ID,
    prices: pricesFromVars(env),
    defaultLimits: {
      rpm: positiveInt("RATE_LIMIT_RPM", env.RATE_LIMIT_RPM, 600),
      tpm: positiveInt("RATE_LIMIT_TPM", env.RATE_LIMIT_TPM, 2_000_000),
      concurrent: positiveInt("RATE_LIMIT_CONCURRENT", env.RATE_LIMIT_CONCURRENT, 64),
    },
    maxQueueDepth: positiveInt("MAX_QUEUE_DEPTH", env.MAX_QUEUE_DEPTH, 1000),
    sseHoldMs: positiveInt("SSE_HOLD_MS", env.SSE_HOLD_MS, 10_000),
    sseKeepAliveMs: Math.max(50, positiveInt("SSE_KEEPALIVE_MS", env.SSE_KEEPALIVE_MS, 10_000)),
    relayDeadlineMs: Math.max(100, positiveInt("RELAY_DEADLINE_MS", env.RELAY_DEADLINE_MS, RELAY_DEADLINE_MS)),
    healthCacheMs: positiveInt("HEALTH_CACHE_MS", env.HEALTH_CACHE_MS, HEALTH_CACHE_MS),
    resumeGraceMs: positiveInt("RESUME_GRACE_MS", env.RESUME_GRACE_MS, RESUME_GRACE_MS),
    stalledWriteMs: Math.max(100, positiveInt("STALLED_WRITE_MS", env.STALLED_WRITE_MS, STALLED_WRITE_MS)),
    leaseMs: Math.max(400, positiveInt("CONCURRENCY_LEASE_MS", env.CONCURRENCY_LEASE_MS, CONCURRENCY_LEASE_MS)),
  };
}
