import { env } from "cloudflare:test";
import { afterAll, describe, expect, it } from "vitest";
import { sha256Hex, type ApiKeyRecord } from "../api-key.ts";
import { answer, EdgeHarness, hello, readSSE, readSSEThenDisconnect } from "./harness.ts";

const edge = new EdgeHarness("resume-meter", { RESUME_GRACE_MS: "2000" });
afterAll(() => edge.close());

async function keyWithLimits(limits: Partial<ApiKeyRecord>): Promise<string> {
  const key = `sk-phi4-meter-${crypto.randomUUID()}`;
  await env.API_KEYS.put(await sha256Hex(key), JSON.stringify({ name: "meter", created: new Date().toISOString(), disabled: false, ...limits }));
  return key;
}

function resume(id: string, key: string, lastEventId?: string, extraEnv = {}): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (lastEventId) headers["last-event-id"] = lastEventId;
  return edge.fetch(`/v1/chat/completions/${id}/events`, { headers }, extraEnv);
}

const start = { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" } as const;

describe("GET /v1/chat/completions/{id}/events is metered like a request", () => {
  it("counts against the key's requests per minute", async () => {
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 3000) await new Promise((r) => setTimeout(r, left + 50));
    const key = await keyWithLimits({ rpm: 2 });
    const responding = edge.chat(hello({ stream: true }), key);
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["x"]));
    await readSSE(await responding);
    expect((await resume(job.id, key)).status).toBe(200);
    const third = await resume(job.id, key);
    expect(third.status).toBe(429);
    expect(await third.json()).toMatchObject({ error: { code: "rate_limit_requests" } });
  });

  it("takes a concurrency slot when another reader is relaying, and takes over the generation's slot when none is", async () => {
    const key = await keyWithLimits({ concurrent: 1 });
    const responding = edge.chat(hello({ stream: true }), key);
    const job = await edge.nextJob();
    const ids = await edge.publish(job.id, start, { type: "delta", index: 0, text: "a", tokens: [1] });
    const original = await responding;
    // A second reader while the first one relays: a second stream for a one-stream key.
    const second = await resume(job.id, key);
    expect(second.status).toBe(429);
    expect(await second.json()).toMatchObject({ error: { code: "rate_limit_concurrency" } });
    // The first reader leaves; within the grace period the resume takes its place.
    await readSSEThenDisconnect(original, 2);
    await new Promise((r) => setTimeout(r, 200));
    const resumed = await resume(job.id, key, ids[1]);
    expect(resumed.status).toBe(200);
    await edge.publish(job.id, { type: "delta", index: 0, text: "b", tokens: [2], finishReason: "stop" }, { type: "done", finishReasons: ["stop"], usage: { promptTokens: 3, completionTokens: 2 } });
    expect((await readSSE(resumed)).events.at(-1)!.data).toBe("[DONE]");
    await edge.settle();
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(0);
    expect(await edge.redis.zcard(edge.keys.concurrency(await sha256Hex(key)))).toBe(0);
  });

  it("rejects a Last-Event-ID past the end of the stream with 400 (and one for a stream that vanished)", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    const ids = await edge.publish(job.id, start, { type: "delta", index: 0, text: "a", tokens: [1] });
    const response = await responding;
    const [ms, seq] = ids[1].split("-");
    const beyond = await resume(job.id, "sk-test-dev-key", `${BigInt(ms) + 60_000n}-${seq}`);
    expect(beyond.status).toBe(400);
    expect(await beyond.json()).toMatchObject({ error: { code: "invalid_last_event_id", param: "Last-Event-ID" } });
    await edge.redis.del(edge.keys.stream(job.id));
    expect((await resume(job.id, "sk-test-dev-key", ids[1])).status).toBe(400);
    await response.body!.cancel();
  });

  it("ends every relay at its deadline with an error event that says to resume", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    const ids = await edge.publish(job.id, start, { type: "delta", index: 0, text: "a", tokens: [1] });
    await readSSEThenDisconnect(await responding, 1);
    const resumed = await resume(job.id, "sk-test-dev-key", ids[1], { RELAY_DEADLINE_MS: "600" });
    expect(resumed.status).toBe(200);
    const started = Date.now();
    const { events } = await readSSE(resumed); // the node never finishes
    expect(Date.now() - started).toBeLessThan(5000);
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ error: { code: "relay_deadline" } });
    await edge.publish(job.id, { type: "done", finishReasons: ["stop"], usage: { promptTokens: 3, completionTokens: 1 } });
  });
});

describe("GET /health", () => {
  it("answers from its last check for HEALTH_CACHE_MS instead of opening Redis on every call", async () => {
    const url = `redis://127.0.0.1:6379/0?health=${crypto.randomUUID()}`;
    const first = await (await edge.fetch("/health", {}, { REDIS_URL: url, HEALTH_CACHE_MS: "60000" })).json() as { checked_at: string };
    const again = await edge.fetch("/health", {}, { REDIS_URL: url, HEALTH_CACHE_MS: "60000" });
    expect(again.status).toBe(200);
    expect(again.headers.get("server-timing")).toBeNull();
    expect(((await again.json()) as { checked_at: string }).checked_at).toBe(first.checked_at);
    const fresh = await (await edge.fetch("/health", {}, { REDIS_URL: url, HEALTH_CACHE_MS: "0" })).json() as { checked_at: string };
    expect(Date.parse(fresh.checked_at)).toBeGreaterThanOrEqual(Date.parse(first.checked_at));
  });
});
