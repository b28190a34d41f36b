/** Every Redis name both halves use, under one configurable prefix (REDIS_PREFIX, default "phi4"). */

export const DEFAULT_REDIS_PREFIX = "phi4";
/** BullMQ queue name; BullMQ's own keys live under `${prefix}:chat:*`. */
export const CHAT_QUEUE = "chat";
/** How long a finished request's stream stays readable for `Last-Event-ID` resume. */
export const STREAM_TTL_SECONDS = 600;
/** How long a raised cancel flag lives (long enough for any node to see it). */
export const CANCEL_TTL_SECONDS = 3600;

export interface RedisKeys {
  prefix: string;
  queue: string;
  /** The request's event stream (one entry per StreamEvent). */
  stream(id: string): string;
  /** Set when the client went away; nodes also hear it on `cancelChannel`. */
  cancel(id: string): string;
  cancelChannel: string;
  /** Live GPU nodes (sorted set of node names by last heartbeat; node-registry.ts). */
  nodes: string;
  /** Request metadata the Worker needs to resume a stream (owner key hash, shape options). */
  meta(id: string): string;
  /** Rate-limit counters of one API key (by its hash) in one window. */
  rateWindow(keyHash: string, kind: "rpm" | "tpm", window: number): string;
  /** Streams a key has open now (sorted set of completion ids, scored by expiry). */
  concurrency(keyHash: string): string;
}

export function redisKeys(prefix: string = DEFAULT_REDIS_PREFIX): RedisKeys {
  if (!/^[A-Za-z0-9_.-]+$/.test(prefix)) throw new Error(`invalid Redis prefix ${JSON.stringify(prefix)}`);
  return {
    prefix,
    queue: CHAT_QUEUE,
    stream: (id) => `${prefix}:stream:${id}`,
    cancel: (id) => `${prefix}:cancel:${id}`,
    cancelChannel: `${prefix}:cancel`,
    nodes: `${prefix}:nodes`,
    meta: (id) => `${prefix}:meta:${id}`,
    rateWindow: (keyHash, kind, window) => `${prefix}:rl:${keyHash}:${kind}:${window}`,
    concurrency: (keyHash) => `${prefix}:conc:${keyHash}`,
  };
}
