/**
 * Several nodes on one queue: jobs are shared without loss or duplication, and a node holds only what
 * its engine has room for, leaving the rest in the queue for others.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { StreamEvent } from "../../../shared/protocol.ts";
import { chatJob } from "../../../stack/chat-jobs.ts";
import { NodeTestbed } from "./node-testbed.ts";

const bed = new NodeTestbed();
afterAll(() => bed.close());

describe("two nodes on one queue", () => {
  it("share 40 jobs: every stream complete exactly once, both nodes busy", async () => {
    const worker = bed.queue("share");
    const [a, b] = await Promise.all(["share-a", "share-b"].map((name) => bed.node(worker, name, { MAX_BATCH: "8" })));

    const jobs = Array.from({ length: 40 }, (_, i) => chatJob({ maxTokens: 6, messages: [{ role: "user", content: `Question number ${i}?` }] }));
    for (const job of jobs) await worker.enqueue(job);
    const streams = await Promise.all(jobs.map((job) => worker.waitForEnd(job.id, 60_000)));

    const servedBy = new Map<string, number>();
    for (const events of streams) {
      const starts = events.filter((e): e is Extract<StreamEvent, { type: "start" }> => e.type === "start");
      expect(starts).toHaveLength(1);
      servedBy.set(starts[0].node, (servedBy.get(starts[0].node) ?? 0) + 1);
      expect(events.filter((e) => e.type === "delta")).toHaveLength(6);
      expect(events.filter((e) => e.type === "done" || e.type === "error")).toEqual([events.at(-1)]);
      expect(events.at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 6 } });
    }
    expect(servedBy.get("share-a")).toBeGreaterThan(0);
    expect(servedBy.get("share-b")).toBeGreaterThan(0);

    // Each job completed once in BullMQ and once in the nodes' own counts (a duplicate run would count twice).
    const states = await Promise.all(jobs.map((job) => worker.queue.getJobState(job.id)));
    expect(states.every((s) => s === "completed")).toBe(true);
    await expect.poll(async () =>
      (await a.metric("phi4_requests_total", { outcome: "completed" })) + (await b.metric("phi4_requests_total", { outcome: "completed" }))).toBe(40);
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe("a node at its batch limit", () => {
  it("leaves further jobs in the queue instead of hoarding them", async () => {
    const worker = bed.queue("hoard");
    const node = await bed.node(worker, "hoard-a", { MAX_BATCH: "2" });

    const jobs = Array.from({ length: 5 }, () => chatJob({ maxTokens: 3000 }));
    for (const job of jobs) await worker.enqueue(job);
    await worker.waitForDeltas(jobs[0].id, 2);
    await worker.waitForDeltas(jobs[1].id, 2);
    await new Promise((resolve) => setTimeout(resolve, 300)); // room to misbehave

    expect(await node.metric("phi4_jobs_in_flight")).toBe(2);
    expect(await worker.queue.getJobCounts("active", "wait")).toEqual({ active: 2, wait: 3 });

    for (const job of jobs) await worker.cancel(job.id);
    const ends = await Promise.all(jobs.map((job) => worker.waitForEnd(job.id, 10_000)));
    for (const events of ends) expect(events.at(-1)).toMatchObject({ type: "done", cancelled: true });
  });
});
