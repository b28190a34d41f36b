/**
 * The GPU node and the Worker's Redis paths on a Redis Cluster: three redis-server processes in
 * cluster mode on loopback, created here. A GPU node process is pointed at it with a
 * `redis-cluster://` REDIS_URL; this side plays the Worker with the Worker's own functions (live-node
 * check, admission script, meta, BullMQ enqueue, stream reader, cancel, release) on an ioredis Cluster.
 * Without hash tags (shared/redis-keys.ts) the node's fenced append and BullMQ's scripts fail with
 * CROSSSLOT and nothing streams.
 */
import { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONCURRENCY_LEASE_MS } from "../../shared/limits.ts";
import { redisKeys } from "../../shared/redis-keys.ts";
import type { StreamEvent } from "../../shared/protocol.ts";
import { chatJob, TestWorker, textsOf, uniquePrefix } from "../../stack/chat-jobs.ts";
import { startNode, type NodeProcess } from "../../stack/node-process.ts";
import { cachedTinyModel } from "../../gpu-node/model/tiny-model.ts";
import { raiseCancel } from "../../worker/cancel.ts";
import { expireFinished, loadMeta, saveMeta } from "../../worker/completion-meta.ts";
import { requireLiveNode } from "../../worker/node-pool.ts";
import { chatQueue, enqueueChat } from "../../worker/queue.ts";
import { admit, release } from "../../worker/rate-limit.ts";
import type { RedisClient } from "../../worker/redis.ts";
import { StreamReader } from "../../worker/stream-reader.ts";
import { startRedisCluster, type RedisClusterProcesses } from "../../stack/redis-server-process.ts";

let cluster: RedisClusterProcesses;
let redis: Cluster;
let worker: TestWorker;
let node: NodeProcess;
/** The Worker's functions are typed for its per-request client; ioredis's Cluster speaks the same commands. */
let edge: RedisClient;
const prefix = uniquePrefix("cluster");
const keys = redisKeys(prefix);

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  redis = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: null } });
  edge = redis as unknown as RedisClient;
  worker = new TestWorker(prefix, redis);
  node = await startNode({ prefix, modelDir: await cachedTinyModel(), name: "cluster-node", env: { REDIS_URL: cluster.url } });
});

afterAll(async () => {
  await node?.stop();
  await worker?.cleanup().catch(() => undefined);
  redis?.disconnect();
  await cluster?.stop();
});

async function readToEnd(id: string, timeoutMs = 60_000): Promise<StreamEvent[]> {
  const reader = new StreamReader(edge, keys.stream(id));
  const events: StreamEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const { event } of await reader.read(1000)) {
      events.push(event);
      if (event.type === "done" || event.type === "error") return events;
    }
  }
  throw new Error(`stream of ${id} did not end within ${timeoutMs} ms`);
}

describe("on a three-master Redis Cluster", () => {
  it("keeps each request's keys in one slot and spreads requests over the masters", async () => {
    const slotOf = async (key: string) => Number(await redis.cluster("KEYSLOT", key));
    const id = "chatcmpl-slotcheck";
    const slot = await slotOf(keys.stream(id));
    for (const key of [keys.meta(id), keys.cancel(id), keys.owner(id)]) expect(await slotOf(key)).toBe(slot);
    expect(await slotOf(keys.rateWindow("abc", "rpm", 1))).toBe(await slotOf(keys.concurrency("abc")));
    const slots = new Set(await Promise.all(Array.from({ length: 32 }, (_, i) => slotOf(keys.stream(`chatcmpl-${i}`)))));
    expect(slots.size).toBeGreaterThan(16);
  });

  it("serves requests end to end through the Worker's Redis paths and the GPU node", async () => {
    await requireLiveNode(edge, keys);
    const queue = chatQueue(edge, keys);
    const limits = { rpm: 100, tpm: 1_000_000, concurrent: 10 };
    const jobs = [chatJob({ maxTokens: 12, n: 2 }), chatJob({ maxTokens: 12, seed: "11" }), chatJob({ maxTokens: 12, seed: "12" })];
    const admissions = [];
    for (const job of jobs) {
      admissions.push(await admit(edge, keys, { keyHash: "key-hash-1", limits, slot: job.id, estimatedTokens: 100, leaseMs: CONCURRENCY_LEASE_MS }));
      await saveMeta(edge, keys, job.id, { ownerKeyHash: "key-hash-1", model: "microsoft/phi-4", created: job.created, n: job.request.n, logprobs: false, includeUsage: true });
      await enqueueChat(queue, job);
    }
    const results = await Promise.all(jobs.map((job) => readToEnd(job.id)));
    for (const [i, events] of results.entries()) {
      const n = jobs[i].request.n;
      expect(events[0]).toMatchObject({ type: "start", n });
      const end = events[events.length - 1];
      expect(end).toMatchObject({ type: "done", usage: { completionTokens: 12 * n } });
      expect(textsOf(events, n).every((t) => t.length > 0)).toBe(true);
      await expireFinished(edge, keys, jobs[i].id);
      expect(await loadMeta(edge, keys, jobs[i].id)).toMatchObject({ ownerKeyHash: "key-hash-1" });
      await release(edge, keys, "key-hash-1", jobs[i].id, admissions[i], 12 * n);
    }
    expect(await redis.zcard(keys.concurrency("key-hash-1"))).toBe(0);
    await queue.close();
  });

  it("stops a request when the Worker raises its cancel", async () => {
    const queue = chatQueue(edge, keys);
    const job = chatJob({ maxTokens: 2000 });
    await enqueueChat(queue, job);
    await worker.waitForDeltas(job.id, 2, 60_000);
    await raiseCancel(edge, keys, job.id);
    const events = await readToEnd(job.id);
    expect(events[events.length - 1]).toMatchObject({ type: "done", cancelled: true });
    expect(events.filter((e) => e.type === "delta").length).toBeLessThan(2000);
    await queue.close();
  });
});
