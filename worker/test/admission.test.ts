import { env } from "cloudflare:test";
import { afterAll, describe, expect, it } from "vitest";
import { sha256Hex, type ApiKeyRecord } from "../api-key.ts";
import { answer, EdgeHarness, hello, readSSE } from "./harness.ts";

const edge = new EdgeHarness("admission");
afterAll(() => edge.close());

/** A KV key with its own limits (each test uses a fresh one so their windows never mix). */
async function keyWithLimits(limits: Partial<ApiKeyRecord>): Promise<{ key: string; hash: string }> {
  const key = `sk-phi4-limits-${crypto.randomUUID()}`;
  const hash = await sha256Hex(key);
  const record: ApiKeyRecord = { name: "limited", created: new Date().toISOString(), disabled: false, ...limits };
  await env.API_KEYS.put(hash, JSON.stringify(record));
  return { key, hash };
}

/** Fixed one-minute windows: start a window test well inside one, so it never straddles two. */
async function awayFromWindowEdge(): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < 3000) await new Promise((r) => setTimeout(r, left + 50));
}

async function expect429(response: Response, code: string) {
  expect(response.status).toBe(429);
  expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  expect(await response.json()).toMatchObject({ error: { type: "rate_limit_error", code } });
}

/** Sends a non-streaming request and plays the node to completion. */
async function complete(key: string, body = hello()): Promise<Response> {
  const responding = edge.chat(body, key);
  const job = await edge.nextJob();
  await edge.publish(job.id, ...answer(["ok"], 5));
  return responding;
}

describe("per-key rate limits", () => {
  it("allows `rpm` requests a minute, then 429 rate_limit_requests with Retry-After", async () => {
    await awayFromWindowEdge();
    const { key } = await keyWithLimits({ rpm: 2 });
    expect((await complete(key)).status).toBe(200);
    expect((await complete(key)).status).toBe(200);
    await expect429(await edge.chat(hello(), key), "rate_limit_requests");
    expect(await edge.waitingJobs()).toBe(0);
  });

  it("charges the prompt estimate plus max_tokens per choice against `tpm`, then reconciles with real usage", async () => {
    await awayFromWindowEdge();
    const { key, hash } = await keyWithLimits({ tpm: 1000 });
    await expect429(await edge.chat(hello({ max_tokens: 1000 }), key), "rate_limit_tokens");
    await expect429(await edge.chat(hello({ max_tokens: 300, n: 4 }), key), "rate_limit_tokens");
    expect((await complete(key, hello({ max_tokens: 900 }))).status).toBe(200);
    await edge.settle();
    // The node reported 5 prompt + 1 completion tokens: the window holds 6, not the ~900 estimate.
    const window = Math.floor(Date.now() / 60_000);
    const charged = Number(await edge.redis.get(edge.keys.rateWindow(hash, "tpm", window)));
    expect(charged).toBe(6);
    expect((await complete(key, hello({ max_tokens: 900 }))).status).toBe(200);
  });

  it("allows `concurrent` open streams per key and frees the slot when a stream ends", async () => {
    const { key } = await keyWithLimits({ concurrent: 1 });
    const first = edge.chat(hello({ stream: true }), key);
    const job = await edge.nextJob();
    await expect429(await edge.chat(hello({ stream: true }), key), "rate_limit_concurrency");
    await edge.publish(job.id, ...answer(["done"]));
    await readSSE(await first);
    await edge.settle();
    expect((await complete(key)).status).toBe(200);
  });
});

describe("queue back-pressure", () => {
  it("answers 429 queue_full with Retry-After once MAX_QUEUE_DEPTH jobs are waiting", async () => {
    const deep = { MAX_QUEUE_DEPTH: "2" };
    const waiting = [edge.chat(hello(), undefined, undefined, deep), edge.chat(hello(), undefined, undefined, deep)];
    for (let i = 0; i < 100 && (await edge.waitingJobs()) < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await edge.waitingJobs()).toBe(2);
    await expect429(await edge.chat(hello(), undefined, undefined, deep), "queue_full");
    for (let i = 0; i < 2; i++) {
      const job = await edge.nextJob();
      await edge.publish(job.id, ...answer(["x"]));
    }
    expect((await Promise.all(waiting)).map((r) => r.status)).toEqual([200, 200]);
  });
});

describe("enqueued job options", () => {
  it("adds the job with attempts for failover and cleanup of finished jobs", async () => {
    const responding = edge.chat(hello());
    let raw: string[] = [];
    for (let i = 0; i < 200 && raw.length === 0; i++) {
      raw = await edge.redis.lrange(`${edge.keys.queuePrefix}:chat:wait`, 0, -1);
      if (raw.length === 0) await new Promise((r) => setTimeout(r, 10));
    }
    const id = raw[0];
    const opts = JSON.parse((await edge.redis.hget(`${edge.keys.queuePrefix}:chat:${id}`, "opts"))!);
    expect(opts).toMatchObject({ attempts: 3, backoff: { type: "exponential", delay: 1000 } });
    expect(opts.removeOnComplete ?? opts.rc).toBeTruthy();
    const job = await edge.nextJob();
    expect(job.id).toBe(id);
    await edge.publish(job.id, ...answer(["x"]));
    expect((await responding).status).toBe(200);
  });
});

describe("GPU node pool", () => {
  const empty = new EdgeHarness("no-nodes", {}, { announceNode: false });
  afterAll(() => empty.close());

  it("answers 503 no_capacity with Retry-After and queues nothing when no GPU node is alive", async () => {
    const response = await empty.chat(hello());
    expect(response.status).toBe(503);
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await response.json()).toMatchObject({ error: { type: "service_unavailable", code: "no_capacity" } });
    expect(await empty.waitingJobs()).toBe(0);
  });

  it("takes requests again once a node's heartbeat is fresh, and not after it went stale", async () => {
    // A heartbeat 20 s old (Redis server time) counts as gone.
    const [seconds] = (await empty.redis.time()) as unknown as [string, string];
    await empty.redis.zadd(empty.keys.nodes, Number(seconds) * 1000 - 20_000, "stale-node");
    expect((await empty.chat(hello())).status).toBe(503);
    await empty.redis.zadd(empty.keys.nodes, Number(seconds) * 1000, "fresh-node");
    const responding = empty.chat(hello());
    const job = await empty.nextJob();
    await empty.publish(job.id, ...answer(["ok"], 5));
    expect((await responding).status).toBe(200);
  });
});
