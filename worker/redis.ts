/**
 * One Redis connection per request. workerd refuses I/O on a socket opened by another request, and a
 * module-scope ioredis client reused across requests hangs silently there; so every request opens its
 * own client and closes it when its response (or stream) ends. Every command carries a timeout
 * (ioredis `commandTimeout`), and connecting has one too: Redis being away becomes a 503, never a hang.
 */
import { Cluster, Redis } from "ioredis";
import { ApiError } from "../shared/errors.ts";
import { parseRedisUrl, type RedisTarget } from "../shared/redis-url.ts";

/** One Redis, or a Redis Cluster when REDIS_URL says `redis-cluster://` (every key of a request shares a slot). */
export type RedisClient = Redis | Cluster;

/** Longest a single command may take; blocking reads block for less than this. */
export const COMMAND_TIMEOUT_MS = 3000;
export const CONNECT_TIMEOUT_MS = 2000;
/** What a 503 tells the client to wait before retrying. */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

export function redisUnavailable(): ApiError {
  return new ApiError(503, "service_unavailable", "The request queue is unreachable; retry shortly.", "queue_unavailable", null, UNAVAILABLE_RETRY_AFTER_S);
}

/**
 * Where REDIS_URL points, or the reason it cannot be used. Checked before ioredis sees it: a URL that
 * fails to parse must never reach an error message or a log, where its password would be echoed
 * (parseRedisUrl's messages never repeat the URL).
 */
function redisTarget(url: string): RedisTarget | string {
  if (!url) return "REDIS_URL is not set: set it with `wrangler secret put REDIS_URL`";
  let target: RedisTarget;
  try {
    target = parseRedisUrl(url);
  } catch (err) {
    return (err as Error).message;
  }
  if (target.kind === "single" && new URL(target.url).hostname === "") return "REDIS_URL has no host";
  return target;
}

/** Per-connection settings, the same for one Redis and for each node of a cluster. */
const CONNECTION_OPTIONS = {
  connectTimeout: CONNECT_TIMEOUT_MS,
  commandTimeout: COMMAND_TIMEOUT_MS,
  maxRetriesPerRequest: 0,
  enableReadyCheck: false,
} as const;

function newClient(target: RedisTarget): RedisClient {
  if (target.kind === "single") {
    return new Redis(target.url, {
      ...CONNECTION_OPTIONS,
      lazyConnect: true,
      enableOfflineQueue: false,
      // A request is short-lived: no reconnect loop, the caller answers 503 instead.
      retryStrategy: () => null,
    });
  }
  return new Cluster(target.nodes, {
    lazyConnect: true,
    // Only until the slot map is read (connect() is awaited first); ioredis keeps the per-node queues it needs.
    enableOfflineQueue: false,
    clusterRetryStrategy: () => null,
    enableReadyCheck: false,
    // The slot map is read once at connect; a request is too short for the periodic refresh.
    slotsRefreshInterval: 0,
    slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
    redisOptions: { ...CONNECTION_OPTIONS, username: target.username, password: target.password, tls: target.tls ? {} : undefined },
    // Addresses are used as given (and as the nodes announce them): no DNS round trip per request, and
    // with TLS the certificate is checked against the name the operator wrote.
    dnsLookup: (address, callback) => callback(null, address),
  });
}

/** Opens a connected client, or throws the 503 ApiError. */
export async function openRedis(url: string): Promise<RedisClient> {
  const target = redisTarget(url);
  if (typeof target === "string") {
    console.error(target);
    throw redisUnavailable();
  }
  const client = newClient(target);
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
