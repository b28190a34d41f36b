/**
 * Every Redis name both halves use, under one configurable prefix (REDIS_PREFIX, default "phi4").
 *
 * Laid out for Redis Cluster (a single instance does not care): a Lua script or MULTI may only touch
 * keys of one hash slot, and a key's slot is decided by the text inside its first `{…}` (a hash tag).
 * - each request's keys carry `{<completion id>}`: its stream, meta, cancel flag and owner fence share a
 *   slot (the node's fenced append and the Worker's expire-together run on them as one), while different
 *   requests spread over the whole cluster, which is where the per-token traffic is;
 * - each API key's rate-limit counters carry `{<key hash>}` (the admission script reads all three);
 * - BullMQ's keys all live under `{<prefix>}` (`queuePrefix`), BullMQ's documented cluster setup
 *   (docs.bullmq.io/patterns/redis-cluster): its scripts span the queue's keys, so one queue is one slot.
 */

export const DEFAULT_REDIS_PREFIX = "phi4";
/** BullMQ queue name; BullMQ's own keys live under `{${prefix}}:chat:*`. */
export const CHAT_QUEUE = "chat";
/** How long a finished request's stream stays readable for `Last-Event-ID` resume. */
export const STREAM_TTL_SECONDS = 600;
/** How long a raised cancel flag lives (long enough for any node to see it). */
export const CANCEL_TTL_SECONDS = 3600;

export interface RedisKeys {
  prefix: string;
  queue: string;
  /** BullMQ's `prefix` option for the chat queue: the prefix as a hash tag, so the whole queue is one slot. */
  queuePrefix: string;
  /** The request's event stream (one entry per StreamEvent). */
  stream(id: string): string;
  /** Set when the client went away; nodes also hear it on `cancelChannel`. */
  cancel(id: string): string;
  cancelChannel: string;
  /**
   * The node entitled to write the request's stream (its job token): set by a node when it takes the
   * job, checked by every append, so a node that lost the job never writes behind its successor.
   */
  owner(id: string): string;
  /** How many times nodes have started the request on their engine (a job that crashes nodes is stopped). */
  starts(id: string): string;
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
    queuePrefix: `{${prefix}}`,
    stream: (id) => `${prefix}:stream:{${id}}`,
    cancel: (id) => `${prefix}:cancel:{${id}}`,
    cancelChannel: `${prefix}:cancel`,
    owner: (id) => `${prefix}:owner:{${id}}`,
    starts: (id) => `${prefix}:starts:{${id}}`,
    nodes: `${prefix}:nodes`,
    meta: (id) => `${prefix}:meta:{${id}}`,
    rateWindow: (keyHash, kind, window) => `${prefix}:rl:{${keyHash}}:${kind}:${window}`,
    concurrency: (keyHash) => `${prefix}:conc:{${keyHash}}`,
  };
}

/** Key patterns (SCAN MATCH) that cover every key of a prefix: its own names and BullMQ's. */
export function keyPatterns(prefix: string): string[] {
  return [`${prefix}:*`, `{${prefix}}:*`];
}
