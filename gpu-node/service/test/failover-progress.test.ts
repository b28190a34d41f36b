/** What a resuming node reads from a stream: per-choice tokens, finished choices, the seed, the end. */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeStreamEvent, type StreamEvent } from "../../../shared/protocol.ts";
import { readPublished, resumeSubmission } from "../failover.ts";
import { chatRequest, uniquePrefix } from "../../../stack/chat-jobs.ts";

const prefix = uniquePrefix("progress");
let redis: Redis;

beforeAll(() => {
  redis = new Redis("redis://127.0.0.1:6379");
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

async function streamOf(name: string, events: StreamEvent[]): Promise<string> {
  const key = `${prefix}:stream:${name}`;
  for (const e of events) await redis.xadd(key, "*", ...encodeStreamEvent(e));
  return key;
}

describe("readPublished + resumeSubmission", () => {
  it("rebuild each choice's tokens and finish, and resume with the seed the first node announced", async () => {
    const key = await streamOf("two-choices", [
      { type: "start", promptTokens: 9, n: 2, seed: "987654321", node: "dead" },
      { type: "delta", index: 0, text: "a", tokens: [10] },
      { type: "delta", index: 1, text: "b", tokens: [20] },
      { type: "delta", index: 0, text: "", tokens: [11] },
      { type: "delta", index: 1, text: "c", tokens: [21], finishReason: "stop" },
      { type: "delta", index: 0, text: "d", tokens: [12] },
    ]);
    const progress = await readPublished(redis, key);
    expect(progress).toMatchObject({ entries: 6, tokens: [[10, 11, 12], [20, 21]], finishReasons: [null, "stop"], end: null });
    const request = chatRequest({ n: 2, seed: null });
    expect(resumeSubmission("x", request, progress)).toEqual({
      id: "x",
      request: { ...request, seed: "987654321" },
      resume: { tokens: [[10, 11, 12], [20, 21]], finishReasons: [null, "stop"] },
    });
  });

  it("treat an empty stream as a fresh start and an ended one as ended", async () => {
    const empty = await readPublished(redis, `${prefix}:stream:none`);
    expect(empty).toEqual({ entries: 0, start: null, tokens: [], finishReasons: [], end: null });
    const request = chatRequest();
    expect(resumeSubmission("y", request, empty)).toEqual({ id: "y", request });

    const done: StreamEvent = { type: "done", finishReasons: ["length"], usage: { promptTokens: 9, completionTokens: 1 } };
    const key = await streamOf("ended", [
      { type: "start", promptTokens: 9, n: 1, seed: "1", node: "dead" },
      { type: "delta", index: 0, text: "a", tokens: [1], finishReason: "length" },
      done,
    ]);
    expect((await readPublished(redis, key)).end).toEqual(done);
  });

  it("page through long streams", async () => {
    const events: StreamEvent[] = [{ type: "start", promptTokens: 1, n: 1, seed: "5", node: "dead" }];
    for (let i = 0; i < 2500; i++) events.push({ type: "delta", index: 0, text: "x", tokens: [i] });
    const key = `${prefix}:stream:long`;
    const pipeline = redis.pipeline();
    for (const e of events) pipeline.xadd(key, "*", ...encodeStreamEvent(e));
    await pipeline.exec();
    const progress = await readPublished(redis, key);
    expect(progress.entries).toBe(2501);
    expect(progress.tokens[0]).toEqual(Array.from({ length: 2500 }, (_, i) => i));
  });
});
