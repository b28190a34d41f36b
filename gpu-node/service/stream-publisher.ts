/**
 * Appends each request's events to its Redis Stream: one entry per event (the contract's encoding),
 * all the events of one engine step in one pipeline.
 *
 * Why a script instead of bare XADDs: each write is fenced twice. It appends only while the request's
 * owner key (shared/redis-keys.ts) still holds this node's job token, and a node that takes the job over
 * sets its own token there before it reads the stream, so a node that lost its job (paused past its
 * lock, partitioned) never adds entries behind its successor; and only if the
 * stream is exactly as long as this node believes, so a write that failed in transit (a reconnect) can
 * never be followed by one that succeeds and leaves a gap. Either refusal marks the request `lost`:
 * nothing more is written for it here, and the stream stays a gap-free, duplicate-free prefix of the
 * request's events for whichever node resumes it.
 *
 * Batching: one script call per step carries every request written in it (each still fenced on its
 * own); on a Redis Cluster, one call per request (a script's keys must share a hash slot, and
 * different requests' keys almost never do; the calls still leave together, pipelined). Engine events reach the host thread one message per step and are handed to the consumers in
 * microtasks; the flush runs on the next macrotask (setImmediate), after all of them.
 */
import { MAX_STREAM_ENTRIES } from "../../shared/limits.ts";
import { encodeStreamEvent, type StreamEvent } from "../../shared/protocol.ts";
import { isCluster, type RedisConnection } from "./redis-connection.ts";

/** What ends a stream that reached its length budget (the edge caps requests well below it). */
const STREAM_BUDGET_ERROR = encodeStreamEvent({
  type: "error", status: 500, errorType: "server_error", code: "stream_budget_exceeded", param: null,
  message: "The completion's output passed its stream length budget and was stopped.",
});

/**
 * One call per step for every stream written in it. KEYS: owner, stream for each request. ARGV: the
 * stream length budget (entries), the finished TTL, the 4 fields of the budget's error event; then for
 * each request in order: token, ttl seconds, expected length before this write, field count, then the
 * fields (4 per entry). Returns per request: entries added; -1 when another node owns it; -2 when the
 * stream is not the expected length (nothing is written for that request, the others are unaffected);
 * -3 when these entries would pass the length budget (the stream ends with the budget's error event
 * instead).
 */
const APPEND_FENCED = `
local results = {}
local budget = tonumber(ARGV[1])
local a = 7
for t = 1, #KEYS / 2 do
  local owner, stream = KEYS[2 * t - 1], KEYS[2 * t]
  local count = tonumber(ARGV[a + 3])
  local first = a + 4
  local length = redis.call("XLEN", stream)
  if redis.call("GET", owner) ~= ARGV[a] then
    results[t] = -1
  elseif length ~= tonumber(ARGV[a + 2]) then
    results[t] = -2
  elseif length + count / 4 > budget then
    redis.call("XADD", stream, "*", ARGV[3], ARGV[4], ARGV[5], ARGV[6])
    redis.call("EXPIRE", stream, ARGV[2])
    results[t] = -3
  else
    for i = first, first + count - 1, 4 do
      redis.call("XADD", stream, "*", ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    end
    redis.call("EXPIRE", stream, ARGV[a + 1])
    redis.call("EXPIRE", owner, ARGV[a + 1])
    results[t] = count / 4
  end
  a = first + count
end
return results
`;

type FencedRedis = RedisConnection & {
  appendFencedEvents(numKeys: number, ...keysThenArgs: Array<string | number>): Promise<number[]>;
};

/** Where one request's events go, and the owner key whose token entitles this node to write there. */
export interface StreamTarget {
  id: string;
  streamKey: string;
  /** The request's owner key (`keys.owner(id)`), which holds `token` while this node owns the job. */
  ownerKey: string;
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
  /** Host-thread time spent encoding events, building and sending calls, and handling replies. */
  hostMs: number;
}

export class StreamPublisher {
  private readonly redis: FencedRedis;
  private pending = new Map<string, PendingWrites>();
  private readonly targets = new Map<string, TargetState>();
  private flushScheduled = false;
  /** Host time spent in append() for the step being collected. */
  private encodeMs = 0;
  private readonly counters: PublisherStats = { flushes: 0, entries: 0, busyMs: 0, hostMs: 0 };

  constructor(
    redis: RedisConnection,
    /** Stream lifetime after its `done`/`error`. */
    private readonly finishedTtlSeconds: number,
    /** Stream lifetime while it is being written (refreshed by every write): covers a job waiting for a failover. */
    private readonly liveTtlSeconds: number,
    /** Called once when a request's writes are refused (another node owns it, stream not as expected, budget spent) or fail. */
    private readonly onLost: (id: string, reason: string) => void,
    /** Called after each step's call is answered: its wall time (send → reply), host-thread time, entries. */
    private readonly onFlushed: (wallMs: number, hostMs: number, entries: number) => void = () => {},
    /** A stream's length budget: entries past it are refused and the stream ends with an error event. */
    private readonly maxEntries: number = MAX_STREAM_ENTRIES,
  ) {
    if (!("appendFencedEvents" in redis)) redis.defineCommand("appendFencedEvents", { lua: APPEND_FENCED });
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
    const t0 = performance.now();
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
      this.encodeMs = 0;
      setImmediate(() => this.flush());
    }
    this.encodeMs += performance.now() - t0;
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
    // One call for all on a single Redis; on a cluster, one per request (its keys share a slot).
    const calls = new Map<string, { ids: string[]; keys: string[]; args: Array<string | number> }>();
    const cluster = isCluster(this.redis);
    let entries = 0;
    for (const [id, writes] of batch) {
      const { target } = writes;
      const group = cluster ? id : "";
      let call = calls.get(group);
      if (!call) calls.set(group, (call = { ids: [], keys: [], args: [this.maxEntries, this.finishedTtlSeconds, ...STREAM_BUDGET_ERROR] }));
      call.ids.push(id);
      call.keys.push(target.ownerKey, target.streamKey);
      call.args.push(target.token, writes.final ? this.finishedTtlSeconds : this.liveTtlSeconds, writes.lengthBefore, writes.fields.length);
      for (const f of writes.fields) call.args.push(f);
      entries += writes.fields.length / 4;
    }
    let hostMs = this.encodeMs;
    this.counters.flushes++;
    this.counters.entries += entries;
    for (const { ids, keys, args } of calls.values()) {
      const replies: Promise<Array<number | Error>> = this.redis.appendFencedEvents(keys.length, ...keys, ...args).then(
        (r) => r,
        (err: Error) => ids.map(() => err),
      );
      ids.forEach((id, at) => {
        const state = this.targets.get(id);
        if (!state) return;
        state.last = replies.then((r) => {
          const t0 = performance.now();
          try {
            return this.outcome(id, state, r[at]);
          } finally {
            hostMs += performance.now() - t0;
          }
        });
      });
    }
    hostMs += performance.now() - started;
    void Promise.all([...batch.keys()].map((id) => this.targets.get(id)?.last)).then(() => {
      const wallMs = performance.now() - started;
      this.counters.busyMs += wallMs;
      this.counters.hostMs += hostMs;
      this.onFlushed(wallMs, hostMs, entries);
    });
  }

  private outcome(id: string, state: TargetState, added: number | Error | undefined): WriteOutcome {
    if (state.lost) return "lost";
    if (typeof added !== "number" || added < 0) {
      state.lost = true;
      const reason = added instanceof Error ? `stream write failed: ${added.message}`
        : added === -1 ? "another node owns the job"
        : added === -3 ? `stream length budget (${this.maxEntries} entries) exceeded; the stream ended with an error`
        : "stream is not where this node left it";
      this.onLost(id, reason);
      return "lost";
    }
    return "written";
  }
}
