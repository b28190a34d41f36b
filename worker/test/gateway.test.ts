import { env } from "cloudflare:test";
import { afterAll, describe, expect, it } from "vitest";
import type { ChatCompletion } from "../../shared/openai-types.ts";
import { newCompletionId, PROTOCOL_VERSION, type ChatJob } from "../../shared/protocol.ts";
import { parseChatRequest, type ChatRequest } from "../../shared/request-schema.ts";
import { sha256Hex } from "../api-key.ts";
import type { Admission } from "../rate-limit.ts";
import type { RedisGateway } from "../redis-gateway.ts";
import { answer, EdgeHarness, hello, readSSE } from "./harness.ts";

// The optional admission gateway runs only where the REDIS_GATEWAY Durable Object is bound
// (the root vitest.config.ts binds it for tests; a deployment opts in, see README).
const bound = (env as { REDIS_GATEWAY?: unknown }).REDIS_GATEWAY !== undefined;
const edge = new EdgeHarness("gateway");
afterAll(() => edge.close());

describe.skipIf(!bound)("admission through the REDIS_GATEWAY Durable Object", () => {
  it("enqueues and relays exactly as the per-request path does, request after request on its one connection", async () => {
    for (let i = 0; i < 3; i++) {
      const responding = edge.chat(hello({ stream: i % 2 === 1 }));
      const job = await edge.nextJob();
      await edge.publish(job.id, ...answer([`r${i}`]));
      const response = await responding;
      expect(response.status).toBe(200);
      if (i % 2 === 1) expect((await readSSE(response)).events.at(-1)!.data).toBe("[DONE]");
      else expect(((await response.json()) as ChatCompletion).choices[0].message.content).toBe(`r${i}`);
    }
  });

  it("carries the gateway's refusals back as OpenAI errors (429 with Retry-After, 503)", async () => {
    const key = `sk-phi4-gw-${crypto.randomUUID()}`;
    await env.API_KEYS.put(await sha256Hex(key), JSON.stringify({ name: "gw", created: new Date().toISOString(), disabled: false, tpm: 10 }));
    const limited = await edge.chat(hello({ max_tokens: 100 }), key);
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
    expect(await limited.json()).toMatchObject({ error: { type: "rate_limit_error", code: "rate_limit_tokens" } });
    const down = await edge.chat(hello(), undefined, undefined, { REDIS_URL: "redis://127.0.0.1:1" });
    expect(down.status).toBe(503);
    expect(await edge.waitingJobs()).toBe(0);
  });

  it("takes an admitted job back (withdraw): off the queue, cancel raised, the key's slot released", async () => {
    const ns = (env as unknown as { REDIS_GATEWAY: { get(id: unknown): RedisGateway; idFromName(n: string): unknown } }).REDIS_GATEWAY;
    const gateway = ns.get(ns.idFromName("gateway"));
    const keyHash = await sha256Hex("sk-withdraw-test");
    const job: ChatJob = { protocol: PROTOCOL_VERSION, id: newCompletionId(), created: 1, enqueuedAt: Date.now(), request: (parseChatRequest(hello()) as { request: ChatRequest }).request };
    const meta = { ownerKeyHash: keyHash, model: "microsoft/phi-4", created: 1, n: 1, logprobs: false, includeUsage: false };
    const outcome = await gateway.admitAndEnqueue("redis://127.0.0.1:6379", edge.prefix, { keyHash, limits: { rpm: 10, tpm: 100_000, concurrent: 1 }, job, meta, estimatedTokens: 50, maxQueueDepth: 100 });
    expect(outcome.ok).toBe(true);
    expect(await edge.waitingJobs()).toBe(1);
    expect(await edge.redis.zcard(edge.keys.concurrency(keyHash))).toBe(1);
    await gateway.withdraw("redis://127.0.0.1:6379", edge.prefix, job.id, keyHash, (outcome as { admission: Admission }).admission);
    expect(await edge.waitingJobs()).toBe(0);
    expect(await edge.redis.exists(edge.keys.cancel(job.id))).toBe(1);
    expect(await edge.redis.zcard(edge.keys.concurrency(keyHash))).toBe(0);
  });
});
