/**
 * The life of one relay of a completion on the edge: its Redis connection, the leases it keeps (the
 * generation's concurrency slot and token charge, and a resume's own slot), its place among the
 * completion's readers, and the ways it ends:
 *  - finished: the stream reached `done`/`error` (release every lease, reconcile, start the TTL);
 *  - failed: the relay itself broke (release its own slot);
 *  - abandoned: the client went away. A streaming client gets a grace period to resume; if another
 *    reader holds the completion by then it carries on, otherwise the cancel signal is raised so the
 *    node frees the sequence.
 * While it relays, every lease is renewed, so a completion may outlive any one lease.
 */
import type { RedisKeys } from "../shared/redis-keys.ts";
import { raiseCancel } from "./cancel.ts";
import { expireFinished } from "./completion-meta.ts";
import { dropReader, holdReader, liveReaders } from "./completion-readers.ts";
import { release, renewSlots, type Admission } from "./rate-limit.ts";
import { closeRedis, openRedis, type RedisClient } from "./redis.ts";
import { lastEntry } from "./stream-reader.ts";

export interface Lease {
  keyHash: string;
  /** The concurrency slot. */
  slot: string;
  admission: Admission;
}

export type WaitUntil = (work: Promise<unknown>) => void;
type Usage = { promptTokens: number; completionTokens: number };

export interface SessionOptions {
  redis: RedisClient;
  keys: RedisKeys;
  id: string;
  redisUrl: string;
  /** The generation's slot (the completion id): the original request's, or taken over by a resume. */
  generation: Lease;
  /** Only the original request knows the generation's token estimate, so only it reconciles usage. */
  reconciles: boolean;
  /** This relay's own slot when it is not the generation's (a resume's). */
  own: Lease | null;
  leaseMs: number;
  waitUntil: WaitUntil;
}

const GRACE_POLL_MS = 200;
const CANCEL_ATTEMPTS = 5;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class CompletionSession {
  readonly redis: RedisClient;
  readonly keys: RedisKeys;
  readonly id: string;
  private readonly options: SessionOptions;
  private readonly reader = crypto.randomUUID();
  private ended = false;
  private renewedAt = 0;
  /** True once the client went away; the relay stops quietly. */
  abandoned = false;

  constructor(options: SessionOptions) {
    this.options = options;
    this.redis = options.redis;
    this.keys = options.keys;
    this.id = options.id;
  }

  private leases(): Lease[] {
    const { generation, own } = this.options;
    return own && own.slot !== generation.slot ? [generation, own] : [generation];
  }

  /** Renews the leases and this reader's presence when a quarter of the lease has passed; the relay calls this between reads. */
  async keepLease(redis: RedisClient = this.redis): Promise<void> {
    const { leaseMs } = this.options;
    if (Date.now() - this.renewedAt < leaseMs / 4) return;
    this.renewedAt = Date.now();
    // Every slot of one relay belongs to one key (a completion is resumed only by its owner).
    const slots = renewSlots(redis, this.keys, this.options.generation.keyHash, this.leases().map((l) => l.slot), leaseMs);
    await Promise.all([slots, this.ended ? null : holdReader(redis, this.keys, this.id, this.reader, leaseMs)]);
  }

  /** The stream reached `done` or `error` (terminal), or the relay broke (not terminal). */
  async finish(usage: Usage | null, terminal: boolean): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    const work = this.cleanup(async (redis) => {
      await dropReader(redis, this.keys, this.id, this.reader);
      if (terminal) {
        await expireFinished(redis, this.keys, this.id);
        await this.releaseAll(redis, usage);
      } else {
        // A resume gives back its own slot; the original request's slot is the generation's.
        if (this.options.own) await this.releaseOwn(redis);
        else await this.releaseAll(redis, null);
      }
    });
    this.options.waitUntil(work);
    await work;
  }

  /**
   * The client disconnected before the end. With a grace period, the generation goes on while a resume
   * may take over; without one (or when none came), the cancel signal is raised. The work goes on the
   * request's own connection, queued behind the pending blocking read (at most MAX_BLOCK_MS): opening a
   * new socket from a request whose client has gone is what workerd is least willing to do; only after
   * a failure does it move to a new client.
   */
  abandon(graceMs: number): void {
    if (this.ended) return;
    this.ended = true;
    this.abandoned = true;
    this.options.waitUntil(this.cleanup(async (redis) => {
      // After a failure, go on with a new client: a cluster client stays "ready" when the socket to one
      // of its nodes is gone, and would fail every later command routed there.
      let conn = redis;
      const renew = async () => {
        if (conn !== redis) await closeRedis(conn);
        conn = await openRedis(this.options.redisUrl).catch(() => redis);
      };
      try {
        // This reader must be gone before the grace looks for readers, or it would take itself for a resume.
        if (!(await dropReader(conn, this.keys, this.id, this.reader).then(() => true, () => false))) {
          await renew();
          await dropReader(conn, this.keys, this.id, this.reader).catch(() => {}); // its lease runs out anyway
        }
        const deadline = Date.now() + graceMs;
        while (Date.now() < deadline) {
          // A check that fails (a slow Redis on a busy machine) is only a missed look: look again.
          const outcome = await this.duringGrace(conn).catch(async () => { await renew(); return null; });
          if (outcome) return;
          await sleep(Math.min(GRACE_POLL_MS, Math.max(0, deadline - Date.now())));
        }
        // Nobody came back. A generation nobody reads must not run on: a failed raise is retried.
        for (let attempt = 1; ; attempt++) {
          try {
            if (conn.status !== "ready") await renew();
            await raiseCancel(conn, this.keys, this.id);
            break;
          } catch (err) {
            if (attempt === CANCEL_ATTEMPTS) throw err;
            await renew();
            await sleep(GRACE_POLL_MS);
          }
        }
        await this.releaseAll(conn, null);
      } finally {
        if (conn !== redis) await closeRedis(conn);
      }
    }));
  }

  /** One look during the grace period: the generation ended, a reader took over, or neither (null). */
  private async duringGrace(redis: RedisClient): Promise<"ended" | "handed_over" | null> {
    const last = await lastEntry(redis, this.keys.stream(this.id));
    if (last && (last.event.type === "done" || last.event.type === "error")) {
      await this.releaseAll(redis, last.event.type === "done" ? last.event.usage : null);
      return "ended";
    }
    if (await liveReaders(redis, this.keys, this.id) > 0) {
      await this.releaseOwn(redis); // the reader now relaying keeps the generation's lease
      return "handed_over";
    }
    await this.keepLease(redis);
    return null;
  }

  private async releaseOwn(redis: RedisClient): Promise<void> {
    const { own, generation } = this.options;
    if (own && own.slot !== generation.slot) await release(redis, this.keys, own.keyHash, own.slot, own.admission, null);
  }

  private async releaseAll(redis: RedisClient, usage: Usage | null): Promise<void> {
    const { generation, reconciles } = this.options;
    await this.releaseOwn(redis);
    const actual = usage && reconciles ? usage.promptTokens + usage.completionTokens : null;
    await release(redis, this.keys, generation.keyHash, generation.slot, generation.admission, actual);
  }

  private async cleanup(work: (redis: RedisClient) => Promise<void>): Promise<void> {
    let redis: RedisClient | null = null;
    try {
      redis = this.redis.status === "ready" ? this.redis : await openRedis(this.options.redisUrl);
      await work(redis);
    } catch {
      // Best effort: leases expire on their own (CONCURRENCY_LEASE_MS) and the cancel key has a TTL.
    } finally {
      if (redis && redis !== this.redis) await closeRedis(redis);
      await closeRedis(this.redis);
    }
  }
}
