/**
 * The step watchdog: a node whose engine holds work but does not finish a step within STEP_WATCHDOG_MS
 * stops renewing its job locks and its heartbeat, answers 503 on /ready, and its job fails over to a
 * healthy node, which finishes it. The stuck step here is real: one prefill chunk of a ~14,000-token
 * prompt (MAX_BATCH_TOKENS covers it whole) against a 300 ms bound.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { chatJob, TestWorker, uniquePrefix } from "../../../stack/chat-jobs.ts";
import { startNode, type NodeProcess } from "../../../stack/node-process.ts";
import { cachedTinyModel } from "../../model/tiny-model.ts";

const FAST_STALL = { LOCK_DURATION_MS: "1000", STALLED_INTERVAL_MS: "300" };

let worker: TestWorker;
const nodes: NodeProcess[] = [];

beforeAll(() => {
  worker = new TestWorker(uniquePrefix("watchdog"));
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await worker?.cleanup();
});

it("a node whose engine stops stepping goes not-ready, stops its heartbeat, and its job fails over", async () => {
  const stuck = await startNode({
    prefix: worker.prefix, modelDir: await cachedTinyModel(), name: "wd-stuck",
    env: { ...FAST_STALL, STEP_WATCHDOG_MS: "300", KV_CACHE_TOKENS: "16384", MAX_BATCH_TOKENS: "16384" },
  });
  nodes.push(stuck);
  expect((await stuck.get("/ready")).status).toBe(200);
  const words = Array.from({ length: 14_000 }, (_, i) => `w${i % 97}`).join(" ");
  const job = chatJob({ maxTokens: 8, messages: [{ role: "user", content: words.slice(0, 27_000) }] });
  await worker.enqueue(job);
  await stuck.waitForLog((l) => l.msg === "engine stalled; giving up this node's jobs", 60_000);
  const ready = await stuck.get("/ready");
  expect(ready.status).toBe(503);
  expect(JSON.parse(ready.body).reason).toMatch(/engine made no step/);
  expect(await worker.redis.zscore(worker.keys.nodes, "wd-stuck")).toBeNull();

  const healthy = await startNode({ prefix: worker.prefix, modelDir: await cachedTinyModel(), name: "wd-healthy", env: { ...FAST_STALL, KV_CACHE_TOKENS: "16384" } });
  nodes.push(healthy);
  const events = await worker.waitForEnd(job.id, 120_000);
  expect(events.at(-1)).toMatchObject({ type: "done", finishReasons: ["length"] });
  expect(events.filter((e) => e.type === "start")).toHaveLength(1);
  expect(healthy.logs.some((l) => l.jobId === job.id && (l.msg === "job resumed" || l.msg === "job started"))).toBe(true);
});
