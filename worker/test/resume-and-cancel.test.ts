import { afterAll, describe, expect, it } from "vitest";
import Redis from "ioredis";
import type { ChatCompletionChunk } from "../../shared/openai-types.ts";
import { STALLED_WRITE_MS } from "../../shared/limits.ts";
import { STREAM_TTL_SECONDS } from "../../shared/redis-keys.ts";
import { answer, DEV_KEY, EdgeHarness, hello, readSSE, readSSEThenDisconnect } from "./harness.ts";

const edge = new EdgeHarness("resume");
afterAll(() => edge.close());

const contentOf = (data: string) => data === "[DONE]" ? "[DONE]" : (JSON.parse(data) as ChatCompletionChunk).choices[0]?.delta.content ?? "";

function resume(id: string, lastEventId: string | null, key = DEV_KEY): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (lastEventId !== null) headers["last-event-id"] = lastEventId;
  return edge.fetch(`/v1/chat/completions/${id}/events`, { headers });
}

/** Subscribes to the cancel channel before the act, to hear what nodes hear. */
async function listenForCancels(): Promise<{ heard: string[]; stop: () => Promise<void> }> {
  const subscriber = new Redis("redis://127.0.0.1:6379", { commandTimeout: 5000 });
  const heard: string[] = [];
  subscriber.on("message", (_channel, message) => heard.push(message));
  await subscriber.subscribe(edge.keys.cancelChannel);
  return { heard, stop: async () => { await subscriber.quit(); } };
}

describe("client disconnect", () => {
  it("raises the cancel signal: the cancel key (with a TTL) and a message on the cancel channel", async () => {
    const cancels = await listenForCancels();
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" }, { type: "delta", index: 0, text: "one", tokens: [1] });
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(0);
    await readSSEThenDisconnect(await responding, 2);
    await edge.settle();
    expect(await edge.redis.get(edge.keys.cancel(job.id))).not.toBeNull();
    expect(await edge.redis.ttl(edge.keys.cancel(job.id))).toBeGreaterThan(0);
    for (let i = 0; i < 100 && !cancels.heard.includes(job.id); i++) await new Promise((r) => setTimeout(r, 10));
    expect(cancels.heard).toContain(job.id);
    await cancels.stop();
  });

  it("does not cancel a completion whose client read it to the end", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["all"]));
    await readSSE(await responding);
    await edge.settle();
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(0);
  });
});

  it("raises the cancel when the client stops taking the stream without cancelling it", async () => {
    // workerd's way of reporting a response write to a vanished client: the body is no longer read, but
    // neither cancelled nor is request.signal raised. The relay's writes back up; one that waits
    // STALLED_WRITE_MS counts as the disconnect (then the grace period, then the cancel).
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" }, { type: "delta", index: 0, text: "one", tokens: [1] });
    const body = (await responding).body!.getReader();
    expect((await body.read()).done).toBe(false);
    // The node goes on; nobody reads the body any more (and nothing cancels it).
    for (let i = 0; i < 20; i++) await edge.publish(job.id, { type: "delta", index: 0, text: ` ${i}`, tokens: [10 + i] });
    const deadline = Date.now() + STALLED_WRITE_MS + 10_000;
    while (Date.now() < deadline && await edge.redis.exists(edge.keys.cancel(job.id)) === 0) await new Promise((r) => setTimeout(r, 50));
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(1);
    expect(await edge.redis.exists(`${edge.keys.meta(job.id)}:readers`)).toBe(0);
    await body.cancel();
  });

  it("hears a stalled write after the deployment's STALLED_WRITE_MS, not the default", async () => {
    // The stall is most of the time a failed-write disconnect takes to reach the cancel, so a deployment
    // (or a test stack whose generations are short) can shorten it; the default alone is 5 s.
    const responding = edge.chat(hello({ stream: true }), DEV_KEY, "/v1/chat/completions", { STALLED_WRITE_MS: "500" });
    const job = await edge.nextJob();
    await edge.publish(job.id, { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" }, { type: "delta", index: 0, text: "one", tokens: [1] });
    const body = (await responding).body!.getReader();
    expect((await body.read()).done).toBe(false);
    const since = Date.now();
    for (let i = 0; i < 20; i++) await edge.publish(job.id, { type: "delta", index: 0, text: ` ${i}`, tokens: [10 + i] });
    while (Date.now() - since < STALLED_WRITE_MS + 10_000 && await edge.redis.exists(edge.keys.cancel(job.id)) === 0) await new Promise((r) => setTimeout(r, 50));
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(1);
    // 500 ms of stall plus the 300 ms grace: well before the default stall alone would have passed.
    expect(Date.now() - since).toBeLessThan(STALLED_WRITE_MS);
    await body.cancel();
  });

describe("GET /v1/chat/completions/{id}/events with Last-Event-ID", () => {
  it("resumes after the last event the client saw: no gap, no duplicate", async () => {
    const responding = edge.chat(hello({ stream: true, stream_options: { include_usage: true } }));
    const job = await edge.nextJob();
    const events = answer(["a", "b", "c", "d", "e"]);
    const ids = await edge.publish(job.id, ...events.slice(0, 4)); // start, a, b, c
    const first = await readSSEThenDisconnect(await responding, 3); // role chunk, a, b
    const lastSeen = first.events.at(-1)!.id!;
    expect(lastSeen).toBe(ids[2]);
    ids.push(...await edge.publish(job.id, ...events.slice(4))); // the node goes on: d, e, done

    const second = await readSSE(await resume(job.id, lastSeen));
    const all = [...first.events, ...second.events];
    expect(all.map((e) => contentOf(e.data))).toEqual(["", "a", "b", "c", "d", "e", "", "[DONE]"]);
    expect(second.events.map((e) => e.id)).toEqual([ids[3], ids[4], ids[5], ids[6], ids[6]]);
    // Chunks keep their completion's identity across the resume.
    const resumed = JSON.parse(second.events[0].data) as ChatCompletionChunk;
    expect(resumed).toMatchObject({ id: job.id, created: job.created, model: "microsoft/phi-4", usage: null });
  });

  it("replays the whole stream without Last-Event-ID, and only [DONE] after the final event", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    const ids = await edge.publish(job.id, ...answer(["x", "y"]));
    const original = await readSSE(await responding);
    const replay = await readSSE(await resume(job.id, null));
    expect(replay.events).toEqual(original.events);
    const tail = await readSSE(await resume(job.id, ids.at(-1)!));
    expect(tail.events.map((e) => e.data)).toEqual(["[DONE]"]);
  });

  it("is 404 for another key, an unknown id, and once the stream has expired; 400 for a malformed Last-Event-ID", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["z"]));
    await readSSE(await responding);
    await edge.settle();
    expect((await resume(job.id, "not-an-id")).status).toBe(400);
    const foreign = await resume(job.id, null, "sk-someone-else");
    expect(foreign.status).toBe(401);
    expect((await resume("chatcmpl-doesnotexist", null)).status).toBe(404);
    // Finished: the stream and its meta expire together after STREAM_TTL_SECONDS.
    const ttl = await edge.redis.ttl(edge.keys.stream(job.id));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(STREAM_TTL_SECONDS);
    await edge.redis.pexpire(edge.keys.stream(job.id), 1);
    await edge.redis.pexpire(edge.keys.meta(job.id), 1);
    await new Promise((r) => setTimeout(r, 20));
    const expired = await resume(job.id, null);
    expect(expired.status).toBe(404);
    expect(await expired.json()).toMatchObject({ error: { type: "not_found_error", code: "completion_not_found" } });
  });

  it("refuses a completion to a different valid key with 404", async () => {
    const { env } = await import("cloudflare:test");
    const { sha256Hex } = await import("../api-key.ts");
    const other = "sk-phi4-other-owner";
    await env.API_KEYS.put(await sha256Hex(other), JSON.stringify({ name: "other", created: new Date().toISOString(), disabled: false }));
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["mine"]));
    await readSSE(await responding);
    expect((await resume(job.id, null, other)).status).toBe(404);
    const mine = await resume(job.id, null);
    expect(mine.status).toBe(200);
    expect((await readSSE(mine)).events.at(-1)!.data).toBe("[DONE]");
  });
});

describe("a disconnect's grace period (RESUME_GRACE_MS)", () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it("does not cancel a generation resumed within the grace period: the resume reads it to its end", async () => {
    const responding = edge.chat(hello({ stream: true }), DEV_KEY, "/v1/chat/completions", { RESUME_GRACE_MS: "3000" });
    const job = await edge.nextJob();
    const events = answer(["a", "b", "c", "d"]);
    await edge.publish(job.id, ...events.slice(0, 3)); // start, a, b
    const first = await readSSEThenDisconnect(await responding, 3);
    await sleep(300); // the client reconnects a moment later
    const resumed = resume(job.id, first.events.at(-1)!.id!);
    await edge.publish(job.id, ...events.slice(3)); // the node goes on: c, d, done
    const second = await readSSE(await resumed);
    expect([...first.events, ...second.events].map((e) => contentOf(e.data)).join("")).toBe("abcd[DONE]");
    await edge.settle();
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(0);
    // The resumed relay saw the end and gave the generation's concurrency slot back.
    expect(await edge.redis.zcard(edge.keys.concurrency(await edge.devKeyHash()))).toBe(0);
  });

  it("raises the cancel only once the grace period has passed with no reader", async () => {
    const responding = edge.chat(hello({ stream: true }), DEV_KEY, "/v1/chat/completions", { RESUME_GRACE_MS: "1500" });
    const job = await edge.nextJob();
    await edge.publish(job.id, { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" }, { type: "delta", index: 0, text: "one", tokens: [1] });
    await readSSEThenDisconnect(await responding, 2);
    await sleep(500);
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(0);
    await edge.settle();
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(1);
    expect(await edge.redis.zcard(edge.keys.concurrency(await edge.devKeyHash()))).toBe(0);
  });
});

describe("POST /v1/chat/completions/{id}/cancel", () => {
  it("stops the owner's generation at once; 404 for another key or an unknown id", async () => {
    const cancels = await listenForCancels();
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" }, { type: "delta", index: 0, text: "one", tokens: [1] });
    const response = await responding;
    const reading = readSSE(response);
    const post = (id: string, key = DEV_KEY) => edge.fetch(`/v1/chat/completions/${id}/cancel`, { method: "POST", headers: { authorization: `Bearer ${key}` } });

    const { env } = await import("cloudflare:test");
    const { sha256Hex } = await import("../api-key.ts");
    const other = "sk-phi4-cancel-stranger";
    await env.API_KEYS.put(await sha256Hex(other), JSON.stringify({ name: "stranger", created: new Date().toISOString(), disabled: false }));
    expect((await post(job.id, other)).status).toBe(404);
    expect((await post("chatcmpl-nosuchthing")).status).toBe(404);
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(0);

    const cancelled = await post(job.id);
    expect(cancelled.status).toBe(200);
    expect(await cancelled.json()).toEqual({ id: job.id, object: "chat.completion.cancellation", cancelled: true });
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(1);
    for (let i = 0; i < 100 && !cancels.heard.includes(job.id); i++) await new Promise((r) => setTimeout(r, 10));
    expect(cancels.heard).toContain(job.id);
    await cancels.stop();
    // The node ends the stream; the reader sees a normal end.
    await edge.publish(job.id, { type: "done", finishReasons: ["stop"], usage: { promptTokens: 3, completionTokens: 1 }, cancelled: true });
    expect((await reading).events.at(-1)!.data).toBe("[DONE]");
    expect(await (await post(job.id)).json()).toMatchObject({ cancelled: false });
  });
});
