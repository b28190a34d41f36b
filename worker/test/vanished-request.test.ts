import { afterAll, describe, expect, it } from "vitest";
import { EdgeHarness, hello, readSSE } from "./harness.ts";

// Quiet streams are looked at every 200 ms.
const edge = new EdgeHarness("vanish", { SSE_KEEPALIVE_MS: "200", SSE_HOLD_MS: "50" });
afterAll(() => edge.close());

const start = { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" } as const;

/** What a Redis restart without persistence leaves of a request: nothing (its job, meta and stream gone). */
async function forget(id: string): Promise<void> {
  await edge.redis.multi()
    .del(`${edge.keys.queuePrefix}:chat:${id}`)
    .lrem(`${edge.keys.queuePrefix}:chat:active`, 0, id)
    .lrem(`${edge.keys.queuePrefix}:chat:wait`, 0, id)
    .del(edge.keys.meta(id))
    .del(edge.keys.stream(id))
    .exec();
}

describe("a request whose job and stream vanished", () => {
  it("ends an open stream with an in-stream request_lost error", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, start, { type: "delta", index: 0, text: "a", tokens: [1] });
    const response = await responding;
    expect(response.status).toBe(200);
    const reading = readSSE(response);
    await new Promise((r) => setTimeout(r, 100));
    await forget(job.id);
    const { events } = await reading;
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ error: { code: "request_lost", type: "service_unavailable" } });
  });

  it("answers a waiting non-streaming request with 503 request_lost", async () => {
    const responding = edge.chat(hello());
    const job = await edge.nextJob();
    await forget(job.id);
    const response = await responding;
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { code: "request_lost" } });
  });

  it("ends a stream whose meta alone vanished, and keeps a quiet but living one open", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, start, { type: "delta", index: 0, text: "a", tokens: [1] });
    const reading = readSSE(await responding);
    await new Promise((r) => setTimeout(r, 700)); // several quiet checks: still alive
    await edge.publish(job.id, { type: "delta", index: 0, text: "b", tokens: [2] });
    await new Promise((r) => setTimeout(r, 100));
    await edge.redis.del(edge.keys.meta(job.id));
    const { events, comments } = await reading;
    expect(comments.length).toBeGreaterThanOrEqual(2);
    expect(events.map((e) => e.data).filter((d) => d.includes('"content":"b"'))).toHaveLength(1);
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ error: { code: "request_lost" } });
  });
});
