/**
 * Smaller node duties: the status server listens on loopback unless configured, a failed job keeps no
 * prompt in Redis, and a job no node started within JOB_EXPIRY_SECONDS is dropped with an error event
 * instead of being served long after its client left.
 */
import net from "node:net";
import os from "node:os";
import { afterAll, beforeAll, expect, it } from "vitest";
import { NodeTestbed } from "./node-testbed.ts";
import { chatJob, type TestWorker } from "../../../stack/chat-jobs.ts";
import type { NodeProcess } from "../../../stack/node-process.ts";

const bed = new NodeTestbed();
let worker: TestWorker;
let node: NodeProcess;

beforeAll(async () => {
  worker = bed.queue("hygiene");
  node = await bed.node(worker, "hygiene", { JOB_EXPIRY_SECONDS: "60" });
});

afterAll(() => bed.close());

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(2000, () => { socket.destroy(); resolve(false); });
    socket.once("connect", () => { socket.destroy(); resolve(true); });
    socket.once("error", () => resolve(false));
  });
}

it("serves /health, /ready and /metrics on loopback only", async () => {
  expect(await connects("127.0.0.1", node.port)).toBe(true);
  const external = Object.values(os.networkInterfaces()).flat().find((a) => a && !a.internal && a.family === "IPv4");
  if (!external) return; // a machine with loopback only has nothing else to listen on
  expect(await connects(external.address, node.port)).toBe(false);
});

it("keeps no prompt in a failed job", async () => {
  const job = chatJob({ model: "gpt-4o", messages: [{ role: "user", content: "my secret plans" }], stop: ["secret stop"] });
  await worker.enqueue(job);
  expect((await worker.waitForEnd(job.id)).at(-1)).toMatchObject({ type: "error", code: "model_not_found" });
  const deadline = Date.now() + 10_000;
  while ((await worker.queue.getJobState(job.id)) !== "failed" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const failed = await worker.queue.getJob(job.id);
  expect(failed?.failedReason).toMatch(/model_not_found/);
  expect(JSON.stringify(failed?.data)).not.toContain("secret");
  expect(failed?.data).toMatchObject({ id: job.id, request: { model: "gpt-4o", maxTokens: 8 } });
});

it("drops a job that waited past the expiry before any node took it", async () => {
  const job = { ...chatJob(), enqueuedAt: Date.now() - 120_000 };
  await worker.enqueue(job);
  const events = await worker.waitForEnd(job.id);
  expect(events).toHaveLength(1);
  expect(events[0]).toMatchObject({ type: "error", status: 503, code: "queue_timeout" });
  const fresh = chatJob();
  await worker.enqueue(fresh);
  expect((await worker.waitForEnd(fresh.id)).at(-1)).toMatchObject({ type: "done" });
});
