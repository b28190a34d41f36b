/**
 * The GPU node's configuration, read once from the environment (README, "Configuration").
 * Every variable has a laptop default; a value that does not parse is a ConfigError naming the
 * variable, which main.ts prints as one line before exiting with status 2.
 */
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { EXECUTION_PROVIDERS, MIN_DEVICE_BLOCK_SIZE, type ExecutionProvider } from "../runner/execution-provider.ts";
import { QUEUED_JOB_EXPIRY_SECONDS, SERVED_MODEL_ID } from "../../shared/limits.ts";
import { DEFAULT_REDIS_PREFIX, STREAM_TTL_SECONDS } from "../../shared/redis-keys.ts";
import { parseRedisUrl, type RedisTarget } from "../../shared/redis-url.ts";

export interface NodeConfig {
  /** One Redis or a cluster (REDIS_URL, shared/redis-url.ts). */
  redis: RedisTarget;
  redisPrefix: string;
  /** null: the tiny model under models/tiny (gpu-node/model/tiny-model.ts), built if missing. */
  modelDir: string | null;
  /** cpu and cuda serve the host layout, webgpu the device layout (model-files.ts). */
  ep: ExecutionProvider;
  /** The model id jobs must name (the Worker's SERVED_MODEL_ID). */
  servedModelId: string;
  maxBatch: number;
  maxBatchTokens: number;
  kvCacheTokens: number;
  kvBlockSize: number;
  /** Where the status server listens: loopback unless set (METRICS_HOST=0.0.0.0 for a scraper elsewhere). */
  metricsHost: string;
  /** 0 picks a free port (tests read the chosen one from the `listening` log line). */
  metricsPort: number;
  nodeName: string;
  drainTimeoutMs: number;
  /** BullMQ: how long a job's lock lives without renewal; a dead node's jobs move on after this. */
  lockDurationMs: number;
  /** BullMQ: how often this node looks for other nodes' stalled jobs. */
  stalledIntervalMs: number;
  /** A job no node has started within this long is dropped with an error event when taken. */
  jobExpirySeconds: number;
  /** A node whose engine holds work but has not stepped for this long gives its jobs up (step-watchdog.ts). */
  stepWatchdogMs: number;
  /** Engine starts a request gets over all nodes before it counts as the cause of their crashes. */
  maxJobStarts: number;
  /** How long a finished request's stream stays readable. */
  streamTtlSeconds: number;
  /** onnxruntime intra-op threads; undefined lets the runtime decide. */
  intraOpThreads: number | undefined;
  logLevel: string;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got ${JSON.stringify(raw)}`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got ${raw}`);
  return value;
}

export function parseNodeConfig(env: Env = process.env): NodeConfig {
  let redis: RedisTarget;
  try {
    redis = parseRedisUrl(env.REDIS_URL || "redis://127.0.0.1:6379");
  } catch (err) {
    throw new ConfigError((err as Error).message); // never the URL itself: it may hold a password
  }
  const redisPrefix = env.REDIS_PREFIX || DEFAULT_REDIS_PREFIX;
  if (!/^[A-Za-z0-9_.-]+$/.test(redisPrefix)) throw new ConfigError(`REDIS_PREFIX may hold only letters, digits, '_', '.', '-', got ${JSON.stringify(redisPrefix)}`);
  const ep = env.ORT_EP || "cpu";
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(ep)) throw new ConfigError(`ORT_EP must be one of ${EXECUTION_PROVIDERS.map((e) => `'${e}'`).join(", ")}, got ${JSON.stringify(ep)}`);
  // The device layout's PagedAttention needs blocks of at least 32 tokens (device-runner.ts).
  const kvBlockSize = integer(env, "KV_BLOCK_SIZE", ep === "webgpu" ? MIN_DEVICE_BLOCK_SIZE : 16, 1, 1024);
  if (ep === "webgpu" && (kvBlockSize < MIN_DEVICE_BLOCK_SIZE || (kvBlockSize & (kvBlockSize - 1)) !== 0)) {
    throw new ConfigError(`KV_BLOCK_SIZE must be a power of two ≥ ${MIN_DEVICE_BLOCK_SIZE} with ORT_EP=webgpu, got ${kvBlockSize}`);
  }
  const kvCacheTokens = integer(env, "KV_CACHE_TOKENS", 65_536, 1);
  if (kvCacheTokens < kvBlockSize) throw new ConfigError(`KV_CACHE_TOKENS (${kvCacheTokens}) must hold at least one block of KV_BLOCK_SIZE (${kvBlockSize}) tokens`);
  const nodeName = env.NODE_NAME || `${os.hostname()}-${process.pid}`;
  if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(nodeName)) throw new ConfigError(`NODE_NAME may hold only letters, digits, '_', '.', ':', '-' (at most 128), got ${JSON.stringify(nodeName)}`);
  const lockDurationMs = integer(env, "LOCK_DURATION_MS", 30_000, 200);
  const logLevel = env.LOG_LEVEL || "info";
  if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got ${JSON.stringify(logLevel)}`);
  }
  const threads = env.INTRA_OP_THREADS;
  const metricsHost = env.METRICS_HOST || "127.0.0.1";
  if (net.isIP(metricsHost) === 0 && metricsHost !== "localhost") throw new ConfigError(`METRICS_HOST must be an IP address (e.g. 127.0.0.1 or 0.0.0.0), got ${JSON.stringify(metricsHost)}`);
  return {
    redis,
    redisPrefix,
    modelDir: env.MODEL_DIR ? path.resolve(env.MODEL_DIR) : null,
    ep: ep as ExecutionProvider,
    servedModelId: env.SERVED_MODEL_ID || SERVED_MODEL_ID,
    maxBatch: integer(env, "MAX_BATCH", 32, 1, 4096),
    maxBatchTokens: integer(env, "MAX_BATCH_TOKENS", 512, 1),
    kvCacheTokens,
    kvBlockSize,
    metricsHost,
    metricsPort: integer(env, "METRICS_PORT", 9464, 0, 65_535),
    nodeName,
    drainTimeoutMs: integer(env, "DRAIN_TIMEOUT_MS", 30_000, 0),
    lockDurationMs,
    stalledIntervalMs: integer(env, "STALLED_INTERVAL_MS", Math.max(100, Math.round(lockDurationMs)), 100),
    maxJobStarts: integer(env, "MAX_JOB_STARTS", 3, 1, 100),
    stepWatchdogMs: integer(env, "STEP_WATCHDOG_MS", 60_000, 100),
    jobExpirySeconds: integer(env, "JOB_EXPIRY_SECONDS", QUEUED_JOB_EXPIRY_SECONDS, 1),
    streamTtlSeconds: integer(env, "STREAM_TTL_SECONDS", STREAM_TTL_SECONDS, 1),
    intraOpThreads: threads === undefined || threads === "" ? undefined : integer(env, "INTRA_OP_THREADS", 0, 1, 1024),
    logLevel,
  };
}
