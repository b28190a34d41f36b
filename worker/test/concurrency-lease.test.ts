import { env } from "cloudflare:test";
import { afterAll, describe, expect, it } from "vitest";
import { sha256Hex, type ApiKeyRecord } from "../api-key.ts";
import { admit, release } from "../rate-limit.ts";
import { answer, EdgeHarness, hello, readSSE } from "./harness.ts";

// Leases of 1 s, so that "longer than a lease" fits in a test.
const LEASE_MS = 1000;
const edge = new EdgeHarness("lease", { CONCURRENCY_LEASE_MS: String(LEASE_MS) });
afterAll(() => edge.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function keyWithLimits(limits: Partial<ApiKeyRecord>): Promise<{ key: string; hash: string }> {
  const key = `sk-phi4-lease-${crypto.randomUUID()}`;
  const hash = await sha256Hex(key);
  await env.API_KEYS.put(hash, JSON.stringify({ name: "lease", created: new Date().toISOString(), disabled: false, ...limits }));
  return { key, hash };
}

describe("concurrency slot leases", () => {
  it("keeps a stream's slot while it is relayed past its lease, and frees it at the end", async () => {
    const { key, hash } = await keyWithLimits({ concurrent: 1 });
    const first = edge.chat(hello({ stream: true }), key);
    const job = await edge.nextJob();
    await edge.publish(job.id, { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" }, { type: "delta", index: 0, text: "a", tokens: [1] });
    const response = await first;
    const reading = readSSE(response);
    // Three leases long, with a token now and then: the relay renews the slot, so it stays taken.
    for (let i = 0; i < 6; i++) {
      await sleep(LEASE_MS / 2);
      await edge.publish(job.id, { type: "delta", index: 0, text: "b", tokens: [2] });
    }
    const second = await edge.chat(hello({ stream: true }), key);
    expect(second.status).toBe(429);
    expect(await second.json()).toMatchObject({ error: { code: "rate_limit_concurrency" } });
    await edge.publish(job.id, { type: "done", finishReasons: ["length"], usage: { promptTokens: 3, completionTokens: 7 } });
    expect((await reading).events.at(-1)!.data).toBe("[DONE]");
    await edge.settle();
    expect(await edge.redis.zcard(edge.keys.concurrency(hash))).toBe(0);
  });

  it("frees a slot nobody renews (a Worker that died mid-stream) after one lease", async () => {
    const { hash } = await keyWithLimits({});
    const limits = { rpm: 100, tpm: 1_000_000, concurrent: 1 };
    await admit(edge.redis as never, edge.keys, { keyHash: hash, limits, slot: "chatcmpl-dead", estimatedTokens: 10, leaseMs: LEASE_MS });
    await expect(admit(edge.redis as never, edge.keys, { keyHash: hash, limits, slot: "chatcmpl-next", estimatedTokens: 10, leaseMs: LEASE_MS })).rejects.toMatchObject({ status: 429 });
    await sleep(LEASE_MS + 100);
    await admit(edge.redis as never, edge.keys, { keyHash: hash, limits, slot: "chatcmpl-next", estimatedTokens: 10, leaseMs: LEASE_MS });
  });

  it("reconciles a slot's token charge once, however many relays release it", async () => {
    const { hash } = await keyWithLimits({});
    const limits = { rpm: 100, tpm: 1_000_000, concurrent: 4 };
    const admission = await admit(edge.redis as never, edge.keys, { keyHash: hash, limits, slot: "chatcmpl-twice", estimatedTokens: 500, leaseMs: 60_000 });
    await release(edge.redis as never, edge.keys, hash, "chatcmpl-twice", admission, 20);
    await release(edge.redis as never, edge.keys, hash, "chatcmpl-twice", admission, 20);
    expect(Number(await edge.redis.get(edge.keys.rateWindow(hash, "tpm", admission.window)))).toBe(20);
  });
});
