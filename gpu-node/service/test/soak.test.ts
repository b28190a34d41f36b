/**
 * Soak: several hundred requests through one GPU node at concurrency 8 (varied n, stop strings,
 * logprobs, a few cancels), with the node's resident memory (from its own /metrics) flat once warm:
 * nothing per request is kept after the request ends.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { NodeTestbed } from "./node-testbed.ts";
import { chatJob, type TestWorker } from "../../../stack/chat-jobs.ts";
import type { NodeProcess } from "../../../stack/node-process.ts";

const bed = new NodeTestbed();
let worker: TestWorker;
let node: NodeProcess;

const TOTAL = 400;
const CONCURRENCY = 8;
const WARMUP = 100;
const MIB = 1024 * 1024;

beforeAll(async () => {
  worker = bed.queue("soak");
  node = await bed.node(worker, "soak");
});

afterAll(() => bed.close());

function request(i: number) {
  return chatJob({
    maxTokens: 6 + (i % 5),
    n: 1 + (i % 3),
    seed: String(i),
    stop: i % 7 === 0 ? ["e"] : [],
    logprobs: i % 11 === 0,
    topLogprobs: i % 11 === 0 ? 3 : 0,
    messages: [{ role: "user", content: `Request ${i}: ${"tell me more ".repeat(1 + (i % 13))}` }],
  });
}

it(`serves ${TOTAL} requests at concurrency ${CONCURRENCY} with flat memory`, async () => {
  const rss: number[] = [];
  let next = 0;
  let finished = 0;
  const outcomes = new Map<string, number>();
  const lane = async () => {
    while (next < TOTAL) {
      const i = next++;
      const job = request(i);
      await worker.enqueue(job);
      if (i % 50 === 25) {
        await worker.waitForDeltas(job.id, 1, 60_000).catch(() => undefined);
        await worker.cancel(job.id);
      }
      const end = (await worker.waitForEnd(job.id, 60_000).catch(async (err: Error) => {
        // What the node knows of the request, for whoever reads the failure.
        const logs = node.logs.filter((l) => l.jobId === job.id || (l.level as number) >= 40).slice(-20);
        const state = await worker.queue.getJobState(job.id);
        throw new Error(`${err.message}; job ${state}; request ${JSON.stringify(job.request).slice(0, 300)}; events ${JSON.stringify(await worker.events(job.id)).slice(0, 1500)}; node logs ${JSON.stringify(logs).slice(0, 3000)}`);
      })).at(-1)!;
      outcomes.set(end.type, (outcomes.get(end.type) ?? 0) + 1);
      if (++finished % 50 === 0) rss.push(await node.metric("gpu_node_process_resident_memory_bytes"));
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));

  expect(outcomes.get("done")).toBe(TOTAL);
  const warm = rss[WARMUP / 50 - 1];
  const grown = Math.max(...rss.slice(WARMUP / 50)) - warm;
  console.log(`soak RSS (MiB) every 50 requests: ${rss.map((b) => (b / MIB).toFixed(1)).join(", ")}`);
  expect(grown / MIB).toBeLessThan(48);
  // Nothing is held once the work is done (the last job settles just after its `done` is read).
  const deadline = Date.now() + 10_000;
  while ((await node.metric("phi4_jobs_in_flight")) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(await node.metric("phi4_jobs_in_flight")).toBe(0);
}, 300_000);
