/**
 * One Redis connection per request. workerd refuses I/O on a socket opened by another request, and a
 * module-scope ioredis client reused across requests hangs silently there; so every request opens its
 * own client and closes it when its response (or stream) ends. Every command carries a timeout
 * (ioredis `commandTimeout`), and connecting has one too: Redis being away becomes a 503, never a hang.
 */
import Redis from "ioredis";
import { ApiError } from "../shared/errors.ts";

export type RedisClient = Redis;

/** Longest a single command may take; blocking reads block for less than this. */
export const COMMAND_TIMEOUT_MS = 3000;
export const CONNECT_TIMEOUT_MS = 2000;
/** What a 503 tells the client to wait before retrying. */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

export function redisUnavailable(): ApiError {
  return new ApiError(503, "service_unavailable", "The request queue is unreachable; retry shortly.", "queue_unavailable", null, UNAVAILABLE_RETRY_AFTER_S);
}

/**
 * The reason REDIS_URL cannot be used, or null. Checked before ioredis sees it: a URL that fails to
 * parse must never reach an error message or a log, where its password would be echoed.
 */
function unusableRedisUrl(url: string): string | null {
  if (!url) return "REDIS_URL is not set: set it with `wrangler secret put REDIS_URL`";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "REDIS_URL does not parse as a URL (its value is not shown: it may hold a password)";
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") return "REDIS_URL must start with redis:// or rediss://";
  if (parsed.hostname === "") return "REDIS_URL has no host";
  return null;
}

/** Opens a connected client, or throws the 503 ApiError. */
export async function openRedis(url: string): Promise<RedisClient> {
  const unusable = unusableRedisUrl(url);
  if (unusable) {
    console.error(unusable);
    throw redisUnavailable();
  }
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    // A request is short-lived: no reconnect loop, the caller answers 503 instead.
    retryStrategy: () => null,
    enableReadyCheck: false,
  });
  client.on("error", () => {}); // surfaced through the rejected command; keep it off the console
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("connect timeout")), CONNECT_TIMEOUT_MS); }),
    ]);
  } catch {
    client.disconnect();
    throw redisUnavailable();
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/** Closes politely (QUIT) within a bound, else drops the socket. Never throws. */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (client.status === "end") return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      client.quit(),
      new Promise((resolve) => { timer = setTimeout(resolve, 500); }),
    ]);
  } catch {
    // already gone
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/** Any Redis failure during a request (timeout, reset) reads to the client as 503 with Retry-After. */
export function asServiceError(err: unknown): ApiError {
  return err instanceof ApiError ? err : redisUnavailable();
}
