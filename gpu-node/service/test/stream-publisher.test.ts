/**
 * The stream publisher against real Redis: one entry per event in order, one pipeline per turn, the
 * finished TTL after `done`, and the two fences (request owner, expected length) that keep a stream a
 * gap-free, duplicate-free prefix of the request's events.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeStreamEvent, encodeStreamEvent, type StreamEvent } from "../../../shared/protocol.ts";
import { redisKeys } from "../../../shared/redis-keys.ts";
import { StreamPublisher, type StreamTarget } from "../stream-publisher.ts";
import { uniquePrefix } from "../../../stack/chat-jobs.ts";

const prefix = uniquePrefix("publisher");
const keys = redisKeys(prefix);
let redis: Redis;
const lost: Array<[string, string]> = [];
let publisher: StreamPublisher;

beforeAll(() => {
  redis = new Redis("redis://127.0.0.1:6379");
  publisher = new StreamPublisher(redis, 60, 3600, (id, reason) => lost.push([id, reason]));
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

async function target(id: string): Promise<StreamTarget> {
  const t = { id, streamKey: keys.stream(id), ownerKey: keys.owner(id), token: `token-${id}` };
  await redis.set(t.ownerKey, t.token, "PX", 10_000);
  return t;
}

async function read(t: StreamTarget): Promise<StreamEvent[]> {
  return ((await redis.xrange(t.streamKey, "-", "+")) as Array<[string, string[]]>).map(([, f]) => decodeStreamEvent(f));
}

const start: StreamEvent = { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" };
const delta = (i: number): StreamEvent => ({ type: "delta", index: 0, text: `t${i}`, tokens: [i] });
const done: StreamEvent = { type: "done", finishReasons: ["length"], usage: { promptTokens: 3, completionTokens: 3 } };

describe("StreamPublisher", () => {
  it("writes one entry per event, in order, one pipeline per turn, and sets the finished TTL after done", async () => {
    const a = await target("a");
    const b = await target("b");
    publisher.open(a, 0);
    publisher.open(b, 0);
    const before = publisher.stats().flushes;
    publisher.append("a", start);
    publisher.append("b", start);
    publisher.append("a", delta(1));
    expect(await publisher.settled("a")).toBe("written");
    expect(publisher.stats().flushes - before).toBe(1);
    expect(await redis.ttl(a.streamKey)).toBeGreaterThan(60); // live TTL while running

    publisher.append("a", delta(2));
    publisher.append("a", done);
    expect(await publisher.settled("a")).toBe("written");
    expect(await read(a)).toEqual([start, delta(1), delta(2), done]);
    expect(await read(b)).toEqual([start]);
    const ttl = await redis.ttl(a.streamKey);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60);
  });

  it("writes nothing once another node owns the request, and reports the request lost", async () => {
    const c = await target("c");
    publisher.open(c, 0);
    publisher.append("c", start);
    expect(await publisher.settled("c")).toBe("written");
    await redis.set(c.ownerKey, "another-node", "PX", 10_000);
    publisher.append("c", delta(1));
    expect(await publisher.settled("c")).toBe("lost");
    publisher.append("c", delta(2));
    expect(await publisher.settled("c")).toBe("lost");
    expect(await read(c)).toEqual([start]);
    expect(lost).toContainEqual(["c", "another node owns the job"]);
  });

  it("refuses to write when the stream is not the length this node expects (no gap, no duplicate)", async () => {
    const d = await target("d");
    await redis.xadd(d.streamKey, "*", ...encodeStreamEvent(start));
    publisher.open(d, 0); // believes the stream is empty: it is not
    publisher.append("d", start);
    expect(await publisher.settled("d")).toBe("lost");
    expect(await read(d)).toEqual([start]);

    const e = await target("e");
    await redis.xadd(e.streamKey, "*", ...encodeStreamEvent(start));
    publisher.open(e, 1); // a failover: continues after the one entry there
    publisher.append("e", delta(1));
    expect(await publisher.settled("e")).toBe("written");
    expect(await read(e)).toEqual([start, delta(1)]);
  });
});

describe("StreamPublisher's stream length budget", () => {
  it("refuses entries past the budget and ends the stream with the budget's error event", async () => {
    const refused: Array<[string, string]> = [];
    const small = new StreamPublisher(redis, 60, 3600, (id, reason) => refused.push([id, reason]), undefined, 4);
    const t = await target("budget");
    small.open(t, 0);
    small.append("budget", start);
    small.append("budget", delta(1));
    small.append("budget", delta(2));
    expect(await small.settled("budget")).toBe("written");
    small.append("budget", delta(3));
    small.append("budget", delta(4)); // 5 entries: one past the budget of 4
    expect(await small.settled("budget")).toBe("lost");
    small.append("budget", delta(5)); // nothing more is written once it ended
    await small.settled("budget");
    const events = await read(t);
    expect(events.slice(0, 3)).toEqual([start, delta(1), delta(2)]);
    expect(events).toHaveLength(4);
    expect(events[3]).toMatchObject({ type: "error", code: "stream_budget_exceeded" });
    expect(await redis.ttl(t.streamKey)).toBeLessThanOrEqual(60); // the finished TTL
    expect(refused).toEqual([["budget", expect.stringContaining("budget")]]);
  });
});
