/**
 * Graceful shutdown: SIGTERM stops a node taking jobs, lets running requests finish within
 * DRAIN_TIMEOUT_MS, hands the rest back to the queue (their streams continue on another node), exit 0.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { StreamEvent } from "../../../shared/protocol.ts";
import { chatJob } from "../../../stack/chat-jobs.ts";
import { NodeTestbed } from "./node-testbed.ts";

const bed = new NodeTestbed();
afterAll(() => bed.close());

describe("SIGTERM", () => {
  it("lets running requests finish within the drain timeout, takes no new job, exits 0", async () => {
    const worker = bed.queue("drain-finish");
    const node = await bed.node(worker, "drain-a", { DRAIN_TIMEOUT_MS: "20000" });
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
    const worker = bed.queue("drain-handback");
    const a = await bed.node(worker, "handback-a", { DRAIN_TIMEOUT_MS: "200" });
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

    const b = await bed.node(worker, "handback-b");
    const streams = await Promise.all(jobs.map((job) => worker.waitForEnd(job.id)));
    for (let i = 0; i < jobs.length; i++) {
      const events = streams[i];
      expect(events.slice(0, handedBack[i].length)).toEqual(handedBack[i]);
      expect(events.filter((e) => e.type === "start")).toHaveLength(1);
      const deltas = events.filter((e): e is Extract<StreamEvent, { type: "delta" }> => e.type === "delta");
      expect(deltas.reduce((t, d) => t + d.tokens.length, 0)).toBe(120);
      expect(events.at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 120 } });
      // The node completes the job just after it publishes `done`, so the state may lag the stream.
      await expect.poll(() => worker.queue.getJobState(jobs[i].id), { timeout: 10_000 }).toBe("completed");
    }
    expect(await b.metric("phi4_requests_resumed_total")).toBe(3);
  });
});
