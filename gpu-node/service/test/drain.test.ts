/**
 * Graceful shutdown: SIGTERM stops a node taking jobs, lets running requests finish within
 * DRAIN_TIMEOUT_MS, hands the rest back to the queue (their streams continue on another node), exit 0.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StreamEvent } from "../../../shared/protocol.ts";
import { chatJob, TestWorker, uniquePrefix } from "./chat-jobs.ts";
import { startNode, type NodeProcess } from "./node-process.ts";
import { tinyModelDir } from "./tiny-model-cache.ts";

let modelDir: string;
const workers: TestWorker[] = [];
const nodes: NodeProcess[] = [];

beforeAll(async () => {
  modelDir = await tinyModelDir();
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await Promise.all(workers.map((w) => w.cleanup()));
});

describe("SIGTERM", () => {
  it("lets running requests finish within the drain timeout, takes no new job, exits 0", async () => {
    const worker = new TestWorker(uniquePrefix("drain-finish"));
    workers.push(worker);
    const node = await startNode({ prefix: worker.prefix, modelDir, name: "drain-a", env: { DRAIN_TIMEOUT_MS: "20000" } });
    nodes.push(node);
    const jobs = Array.from({ length: 3 }, () => chatJob({ maxTokens: 40 }));
    for (const job of jobs) await worker.enqueue(job);
    await worker.waitForDeltas(jobs[2].id, 1);

    node.child.kill("SIGTERM");
    await node.waitForLog((l) => l.msg === "draining");
    const late = chatJob({ maxTokens: 3 });
    await worker.enqueue(late);

    expect(await node.exited).toEqual({ code: 0, signal: null });
    for (const job of jobs) {
      const events = await worker.events(job.id);
      expect(events.at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 40 } });
      expect(await worker.queue.getJobState(job.id)).toBe("completed");
    }
    expect(await worker.queue.getJobState(late.id)).toBe("waiting");
    expect(await worker.events(late.id)).toEqual([]);
    expect(node.logs.find((l) => l.msg === "stopped")).toMatchObject({ finished: 3, handedBack: 0, exitCode: 0 });
  });

  it("hands requests still running at the timeout back to the queue; another node continues their streams", async () => {
    const worker = new TestWorker(uniquePrefix("drain-handback"));
    workers.push(worker);
    const a = await startNode({ prefix: worker.prefix, modelDir, name: "handback-a", env: { DRAIN_TIMEOUT_MS: "200" } });
    nodes.push(a);
    const jobs = Array.from({ length: 3 }, (_, i) => chatJob({ maxTokens: 120, seed: String(100 + i) }));
    for (const job of jobs) await worker.enqueue(job);
    for (const job of jobs) await worker.waitForDeltas(job.id, 3);

    const signalled = Date.now();
    a.child.kill("SIGTERM");
    expect(await a.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(5000);
    expect(a.logs.find((l) => l.msg === "stopped")).toMatchObject({ handedBack: 3, exitCode: 0 });
    const handedBack = await Promise.all(jobs.map((job) => worker.events(job.id)));
    for (const events of handedBack) expect(events.some((e) => e.type === "done")).toBe(false);
    expect(await worker.queue.getJobCounts("wait", "active")).toEqual({ wait: 3, active: 0 });

    const b = await startNode({ prefix: worker.prefix, modelDir, name: "handback-b" });
    nodes.push(b);
    const streams = await Promise.all(jobs.map((job) => worker.waitForEnd(job.id)));
    for (let i = 0; i < jobs.length; i++) {
      const events = streams[i];
      expect(events.slice(0, handedBack[i].length)).toEqual(handedBack[i]);
      expect(events.filter((e) => e.type === "start")).toHaveLength(1);
      const deltas = events.filter((e): e is Extract<StreamEvent, { type: "delta" }> => e.type === "delta");
      expect(deltas.reduce((t, d) => t + d.tokens.length, 0)).toBe(120);
      expect(events.at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 120 } });
      expect(await worker.queue.getJobState(jobs[i].id)).toBe("completed");
    }
    expect(await b.metric("phi4_requests_resumed_total")).toBe(3);
  });
});
