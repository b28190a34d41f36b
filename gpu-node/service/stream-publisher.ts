/**
 * Appends each request's events to its Redis Stream: one entry per event (the contract's encoding),
 * all the events of one engine step in one pipeline.
 *
 * Why a script instead of bare XADDs: each write is fenced twice. It appends only while the job's BullMQ
 * lock still holds this node's token, so a node that lost its job (paused past its lock, partitioned, or
 * handing the job back) never adds entries behind the node that took the job over; and only if the
 * stream is exactly as long as this node believes, so a write that failed in transit (a reconnect) can
 * never be followed by one that succeeds and leaves a gap. Either refusal marks the request `lost`:
 * nothing more is written for it here, and the stream stays a gap-free, duplicate-free prefix of the
 * request's events for whichever node resumes it.
 *
 * Batching: engine events reach the host thread one message per step and are handed to the consumers
 * in microtasks; the flush runs on the next macrotask (setImmediate), after all of them.
 */
import type { Redis } from "ioredis";
import { encodeStreamEvent, type StreamEvent } from "../../shared/protocol.ts";

/**
 * KEYS: lock, stream. ARGV: token, ttl seconds, expected length before this write, then 4 fields per entry.
 * Returns the entries added; -1 without the lock; -2 when the stream is not the expected length.
 */
const APPEND_FENCED = `
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call("XLEN", KEYS[2]) ~= tonumber(ARGV[3]) then return -2 end
for i = 4, #ARGV, 4 do
  redis.call("XADD", KEYS[2], "*", ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
end
redis.call("EXPIRE", KEYS[2], ARGV[2])
return (#ARGV - 3) / 4
`;

type FencedRedis = Redis & {
  appendFencedEvents(lockKey: string, streamKey: string, token: string, ttl: number, lengthBefore: number, ...fields: string[]): Promise<number>;
};

/** Where one request's events go, and the job lock that entitles this node to write there. */
export interface StreamTarget {
  id: string;
  streamKey: string;
  /** BullMQ's lock key of the job (`<prefix>:chat:<id>:lock`). */
  lockKey: string;
  token: string;
}

export type WriteOutcome = "written" | "lost";

interface PendingWrites {
  target: StreamTarget;
  /** Stream length before these entries. */
  lengthBefore: number;
  fields: string[];
  final: boolean;
}

interface TargetState {
  target: StreamTarget;
  /** Entries in the stream once everything queued so far is written. */
  length: number;
  /** Resolves when the latest write for this target is done. */
  last: Promise<WriteOutcome>;
  lost: boolean;
}

export interface PublisherStats {
  flushes: number;
  entries: number;
  /** Wall time from building a step's pipeline to its reply, summed over flushes. */
  busyMs: number;
}

export class StreamPublisher {
  private readonly redis: FencedRedis;
  private pending = new Map<string, PendingWrites>();
  private readonly targets = new Map<string, TargetState>();
  private flushScheduled = false;
  private readonly counters: PublisherStats = { flushes: 0, entries: 0, busyMs: 0 };

  constructor(
    redis: Redis,
    /** Stream lifetime after its `done`/`error`. */
    private readonly finishedTtlSeconds: number,
    /** Stream lifetime while it is being written (refreshed by every write): covers a job waiting for a failover. */
    private readonly liveTtlSeconds: number,
    /** Called once when a request's writes are refused (lock lost, stream not as expected) or fail. */
    private readonly onLost: (id: string, reason: string) => void,
  ) {
    if (!("appendFencedEvents" in redis)) redis.defineCommand("appendFencedEvents", { numberOfKeys: 2, lua: APPEND_FENCED });
    this.redis = redis as FencedRedis;
  }

  /** Starts writing a request's stream, which already holds `existingEntries` entries (a failover). */
  open(target: StreamTarget, existingEntries: number): void {
    this.targets.set(target.id, { target, length: existingEntries, last: Promise.resolve("written"), lost: false });
  }

  /** Queues one event; it goes out with the rest of this step's events. */
  append(id: string, event: StreamEvent): void {
    const state = this.targets.get(id);
    if (!state) throw new Error(`stream of ${id} is not open`);
    if (state.lost) return;
    let writes = this.pending.get(id);
    if (!writes) {
      writes = { target: state.target, lengthBefore: state.length, fields: [], final: false };
      this.pending.set(id, writes);
    }
    const [f1, v1, f2, v2] = encodeStreamEvent(event);
    writes.fields.push(f1, v1, f2, v2);
    state.length++;
    if (event.type === "done" || event.type === "error") writes.final = true;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Resolves once everything appended for this request so far is in Redis ("written"), or never will be ("lost"). */
  async settled(id: string): Promise<WriteOutcome> {
    // A scheduled flush runs before this callback (setImmediate is FIFO) and sets `last`.
    if (this.pending.has(id)) await new Promise<void>((resolve) => setImmediate(resolve));
    const state = this.targets.get(id);
    if (!state) throw new Error(`stream of ${id} is not open`);
    return state.lost ? "lost" : state.last;
  }

  /** Forgets a request once it is settled. */
  close(id: string): void {
    this.targets.delete(id);
    this.pending.delete(id);
  }

  stats(): PublisherStats {
    return { ...this.counters };
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.size === 0) return;
    this.pending = new Map();
    const started = performance.now();
    const pipeline = this.redis.pipeline() as unknown as FencedRedis & { exec(): Promise<Array<[Error | null, unknown]> | null> };
    let entries = 0;
    for (const writes of batch.values()) {
      const { target } = writes;
      const ttl = writes.final ? this.finishedTtlSeconds : this.liveTtlSeconds;
      void pipeline.appendFencedEvents(target.lockKey, target.streamKey, target.token, ttl, writes.lengthBefore, ...writes.fields);
      entries += writes.fields.length / 4;
    }
    const replies = pipeline.exec().then(
      (r) => r ?? [],
      (err: Error) => [...batch.keys()].map((): [Error, unknown] => [err, null]),
    );
    this.counters.flushes++;
    this.counters.entries += entries;
    let index = 0;
    for (const id of batch.keys()) {
      const state = this.targets.get(id);
      const at = index++;
      if (!state) continue;
      state.last = replies.then((r) => {
        const [err, added] = r[at] ?? [new Error("no reply"), null];
        if (state.lost) return "lost";
        if (err || typeof added !== "number" || added < 0) {
          state.lost = true;
          const reason = err ? `stream write failed: ${err.message}` : added === -1 ? "job lock lost" : "stream is not where this node left it";
          this.onLost(id, reason);
          return "lost";
        }
        return "written";
      });
    }
    void replies.then(() => (this.counters.busyMs += performance.now() - started));
  }
}
