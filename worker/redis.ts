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

/** Opens a connected client, or throws the 503 ApiError. */
export async function openRedis(url: string): Promise<RedisClient> {
  if (!url) {
    console.error("REDIS_URL is not set: set it with `wrangler secret put REDIS_URL`");
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
