/**
 * The life of one admitted completion on the edge: its Redis connection, its concurrency lease and
 * token charge, and the two ways it ends — finished (release, reconcile, start the stream's TTL) or
 * abandoned by the client (raise the cancel signal so the node frees the sequence, then release).
 */
import type { RedisKeys } from "../shared/redis-keys.ts";
import { raiseCancel } from "./cancel.ts";
import { expireFinished } from "./completion-meta.ts";
import { release, type Admission } from "./rate-limit.ts";
import { closeRedis, openRedis, type RedisClient } from "./redis.ts";

export interface Lease {
  keyHash: string;
  admission: Admission;
}

export type WaitUntil = (work: Promise<unknown>) => void;

export class CompletionSession {
  private ended = false;
  /** True once the client went away; the relay stops quietly. */
  abandoned = false;

  constructor(
    readonly redis: RedisClient,
    readonly keys: RedisKeys,
    readonly id: string,
    private readonly redisUrl: string,
    /** Null for a resumed stream: the original request holds the lease. */
    private readonly lease: Lease | null,
    private readonly waitUntil: WaitUntil,
  ) {}

  /** The stream reached `done` or `error`: usage (when known) reconciles the token charge. */
  async finish(usage: { promptTokens: number; completionTokens: number } | null, terminal: boolean): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    const work = this.cleanup(async (redis) => {
      if (terminal) await expireFinished(redis, this.keys, this.id);
      if (this.lease) {
        const actual = usage ? usage.promptTokens + usage.completionTokens : null;
        await release(redis, this.keys, this.lease.keyHash, this.id, this.lease.admission, actual);
      }
    });
    this.waitUntil(work);
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
    this.waitUntil(this.cleanup(async (redis) => {
      await raiseCancel(redis, this.keys, this.id);
      if (this.lease) await release(redis, this.keys, this.lease.keyHash, this.id, this.lease.admission, null);
    }));
  }

  private async cleanup(work: (redis: RedisClient) => Promise<void>): Promise<void> {
    let redis: RedisClient | null = null;
    try {
      redis = this.redis.status === "ready" ? this.redis : await openRedis(this.redisUrl);
      await work(redis);
    } catch {
      // Best effort: leases expire on their own (CONCURRENCY_LEASE_MS) and the cancel key has a TTL.
    } finally {
      if (redis && redis !== this.redis) await closeRedis(redis);
      await closeRedis(this.redis);
    }
  }
}
