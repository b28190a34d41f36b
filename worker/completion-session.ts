/**
 * The life of one admitted completion on the edge: its Redis connection, its concurrency lease and
 * token charge, and the two ways it ends — finished (release, reconcile, start the stream's TTL) or
 * abandoned by the client (raise the cancel signal so the node frees the sequence, then release).
 * While it relays, its lease is renewed, so a completion may outlive any one lease.
 */
import type { RedisKeys } from "../shared/redis-keys.ts";
import { raiseCancel } from "./cancel.ts";
import { expireFinished } from "./completion-meta.ts";
import { release, renewSlots, type Admission } from "./rate-limit.ts";
import { closeRedis, openRedis, type RedisClient } from "./redis.ts";

export interface Lease {
  keyHash: string;
  /** The concurrency slot this relay holds. */
  slot: string;
  admission: Admission;
}

export type WaitUntil = (work: Promise<unknown>) => void;

export interface SessionOptions {
  redis: RedisClient;
  keys: RedisKeys;
  id: string;
  redisUrl: string;
  /** Null for a resumed stream: the original request holds the lease. */
  lease: Lease | null;
  leaseMs: number;
  waitUntil: WaitUntil;
}

export class CompletionSession {
  readonly redis: RedisClient;
  readonly keys: RedisKeys;
  readonly id: string;
  private readonly options: SessionOptions;
  private ended = false;
  private renewedAt = Date.now();
  /** True once the client went away; the relay stops quietly. */
  abandoned = false;

  constructor(options: SessionOptions) {
    this.options = options;
    this.redis = options.redis;
    this.keys = options.keys;
    this.id = options.id;
  }

  /** Renews the lease when a quarter of it has passed; the relay calls this between reads. */
  async keepLease(): Promise<void> {
    const { lease, leaseMs } = this.options;
    if (!lease || this.ended || Date.now() - this.renewedAt < leaseMs / 4) return;
    this.renewedAt = Date.now();
    await renewSlots(this.redis, this.keys, lease.keyHash, [lease.slot], leaseMs);
  }

  /** The stream reached `done` or `error`: usage (when known) reconciles the token charge. */
  async finish(usage: { promptTokens: number; completionTokens: number } | null, terminal: boolean): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    const lease = this.options.lease;
    const work = this.cleanup(async (redis) => {
      if (terminal) await expireFinished(redis, this.keys, this.id);
      if (lease) {
        const actual = usage ? usage.promptTokens + usage.completionTokens : null;
        await release(redis, this.keys, lease.keyHash, lease.slot, lease.admission, actual);
      }
    });
    this.options.waitUntil(work);
    await work;
  }

  /**
   * The client disconnected before the end: raise the cancel signal. It goes on the request's own
   * connection, queued behind the pending blocking read (at most MAX_BLOCK_MS): opening a new socket
   * from a request whose client has gone is what workerd is least willing to do.
   */
  abandon(): void {
    if (this.ended) return;
    this.ended = true;
    this.abandoned = true;
    const lease = this.options.lease;
    this.options.waitUntil(this.cleanup(async (redis) => {
      await raiseCancel(redis, this.keys, this.id);
      if (lease) await release(redis, this.keys, lease.keyHash, lease.slot, lease.admission, null);
    }));
  }

  private async cleanup(work: (redis: RedisClient) => Promise<void>): Promise<void> {
    let redis: RedisClient | null = null;
    try {
      redis = this.redis.status === "ready" ? this.redis : await openRedis(this.options.redisUrl);
      await work(redis);
    } catch {
      // Best effort: the lease expires on its own (CONCURRENCY_LEASE_MS) and the cancel key has a TTL.
    } finally {
      if (redis && redis !== this.redis) await closeRedis(redis);
      await closeRedis(this.redis);
    }
  }
}
