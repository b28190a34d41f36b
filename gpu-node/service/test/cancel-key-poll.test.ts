/**
 * A cancel whose pub/sub message never arrives (lost while the node's subscriber reconnected) still
 * stops the request: the node reads the cancel key every few steps. Here the key is raised without any
 * message at all; without the poll the request would run to max_tokens.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { CANCEL_TTL_SECONDS } from "../../../shared/redis-keys.ts";
import { NodeTestbed } from "./node-testbed.ts";
import { chatJob, type TestWorker } from "../../../stack/chat-jobs.ts";
import type { NodeProcess } from "../../../stack/node-process.ts";

const bed = new NodeTestbed();
let worker: TestWorker;
let node: NodeProcess;

beforeAll(async () => {
  worker = bed.queue("cancelpoll");
  node = await bed.node(worker, "cancelpoll");
});

afterAll(() => bed.close());

it("stops a running request whose cancel key is set but whose message was lost", async () => {
  const job = chatJob({ maxTokens: 3000 });
  await worker.enqueue(job);
  await worker.waitForDeltas(job.id, 3, 60_000);
  await worker.redis.set(worker.keys.cancel(job.id), "1", "EX", CANCEL_TTL_SECONDS); // no PUBLISH
  const events = await worker.waitForEnd(job.id, 60_000);
  expect(events.at(-1)).toMatchObject({ type: "done", cancelled: true });
  const deltas = events.filter((e) => e.type === "delta").length;
  expect(deltas).toBeLessThan(1000);
  expect(await node.metric("phi4_requests_total", { outcome: "cancelled" })).toBe(1);
});
