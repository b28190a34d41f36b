/**
 * Chaos: the Redis under live streams is killed and restarted empty (no persistence). Every stream
 * still ends (its `done`, or an `error` the node writes once it finds the request's state gone), and a
 * new request succeeds afterwards on the same, never restarted, GPU node. A private redis-server on a
 * free port stands in for production's Redis; the shared 6379 is never touched.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { chatJob, TestWorker, uniquePrefix } from "../../stack/chat-jobs.ts";
import { startNode, type NodeProcess } from "../../stack/node-process.ts";
import { cachedTinyModel } from "../../gpu-node/model/tiny-model.ts";
import { startRedisServer, type RedisServerProcess } from "../../stack/redis-server-process.ts";

let redisServer: RedisServerProcess;
let worker: TestWorker;
let node: NodeProcess;

beforeAll(async () => {
  redisServer = await startRedisServer();
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  redis.on("error", () => {}); // the restart drops it; it reconnects
  worker = new TestWorker(uniquePrefix("chaos"), redis);
  node = await startNode({
    prefix: worker.prefix, modelDir: await cachedTinyModel(), name: "chaos-node",
    env: { REDIS_URL: redisServer.url, LOCK_DURATION_MS: "2000", STALLED_INTERVAL_MS: "500" },
  });
});

afterAll(async () => {
  await node?.stop();
  worker?.redis.disconnect();
  await redisServer?.stop();
});

it("ends every live stream and serves the next request after Redis restarts empty", async () => {
  const jobs = [1, 2, 3, 4].map((i) => chatJob({ maxTokens: 3000, seed: String(i) }));
  for (const job of jobs) await worker.enqueue(job);
  // Readers start now, as the Worker's relays would, and keep reading through the restart.
  const ends = jobs.map((job) => worker.waitForEnd(job.id, 90_000));
  await Promise.all(jobs.map((job) => worker.waitForDeltas(job.id, 3, 60_000)));

  await redisServer.restart();

  const streams = await Promise.all(ends);
  for (const events of streams) {
    const end = events.at(-1)!;
    expect(["done", "error"]).toContain(end.type);
    if (end.type === "error") expect(end).toMatchObject({ status: 503, code: "request_state_lost" });
  }
  expect(streams.some((events) => events.at(-1)!.type === "error")).toBe(true);

  // Nothing restarted but Redis: the node reconnects, re-announces itself and takes new work.
  const next = chatJob({ maxTokens: 6 });
  await worker.enqueue(next);
  expect((await worker.waitForEnd(next.id, 60_000)).at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 6 } });
  expect(node.child.exitCode).toBeNull();
  expect((await node.get("/ready")).status).toBe(200);
  // Its heartbeat (every 2 s) puts it back in the emptied registry.
  const deadline = Date.now() + 10_000;
  while ((await worker.redis.zscore(worker.keys.nodes, "chaos-node")) === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(await worker.redis.zscore(worker.keys.nodes, "chaos-node")).not.toBeNull();
});
