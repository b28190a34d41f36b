/**
 * A job that takes its node down each time it runs (a native crash: the process dies mid-step, here a
 * SIGKILL while the job is generating) must not come back forever: each engine start is counted, and
 * after MAX_JOB_STARTS the next node ends the request with an `error` event and fails the job.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { chatJob, TestWorker, uniquePrefix } from "../../../stack/chat-jobs.ts";
import { startNode, type NodeProcess } from "../../../stack/node-process.ts";
import { cachedTinyModel } from "../../model/tiny-model.ts";

const ENV = { LOCK_DURATION_MS: "1000", STALLED_INTERVAL_MS: "300", MAX_JOB_STARTS: "2" };

let worker: TestWorker;
const nodes: NodeProcess[] = [];

beforeAll(() => {
  worker = new TestWorker(uniquePrefix("crashing"));
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await worker?.cleanup();
});

it("ends a request that crashed MAX_JOB_STARTS nodes with an error event and fails its job", async () => {
  const job = chatJob({ maxTokens: 4000 });
  await worker.enqueue(job);
  for (let crash = 1; crash <= 2; crash++) {
    const node = await startNode({ prefix: worker.prefix, modelDir: await cachedTinyModel(), name: `crash-${crash}`, env: ENV });
    nodes.push(node);
    await node.waitForLog((l) => l.msg === "job started" || l.msg === "job resumed", 60_000);
    await worker.waitForDeltas(job.id, crash * 3, 60_000);
    node.child.kill("SIGKILL");
    await node.exited;
  }
  const last = await startNode({ prefix: worker.prefix, modelDir: await cachedTinyModel(), name: "crash-3", env: ENV });
  nodes.push(last);
  const events = await worker.waitForEnd(job.id, 60_000);
  expect(events.at(-1)).toMatchObject({ type: "error", status: 500, code: "request_crashed_nodes" });
  expect(events.filter((e) => e.type === "start")).toHaveLength(1);
  // Failed for good, not queued again.
  const deadline = Date.now() + 10_000;
  while ((await worker.queue.getJobState(job.id)) !== "failed" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(await worker.queue.getJobState(job.id)).toBe("failed");
  // The surviving node took no further start of it.
  expect(last.logs.some((l) => l.msg === "job resumed" || l.msg === "job started")).toBe(false);
});
