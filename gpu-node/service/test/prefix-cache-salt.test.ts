/**
 * The prefix cache is partitioned by the job's cacheSalt (one per API key, or per organisation): a
 * request never reuses blocks another salt's prompt left in the cache, so its time to first token
 * says nothing about other keys' prompts; requests under the same salt still share.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { NodeTestbed } from "./node-testbed.ts";
import { chatJob, type TestWorker } from "../../../stack/chat-jobs.ts";
import type { NodeProcess } from "../../../stack/node-process.ts";

const bed = new NodeTestbed();
let worker: TestWorker;
let node: NodeProcess;

beforeAll(async () => {
  worker = bed.queue("cachesalt");
  node = await bed.node(worker, "cachesalt");
});

afterAll(() => bed.close());

const prompt = Array.from({ length: 120 }, (_, i) => `secret${i}`).join(" ");

async function run(salt: string): Promise<number> {
  const job = { ...chatJob({ maxTokens: 2, messages: [{ role: "user", content: prompt }] }), cacheSalt: salt };
  await worker.enqueue(job);
  const events = await worker.waitForEnd(job.id, 60_000);
  expect(events.at(-1)).toMatchObject({ type: "done" });
  return node.metric("phi4_prefix_cache_hit_rate");
}

it("shares cached prompt blocks only between requests with the same salt", async () => {
  expect(await run("00000000000000aa")).toBe(0);
  // Same prompt, another key: nothing found in the cache.
  expect(await run("00000000000000bb")).toBe(0);
  // Same prompt, the first key again: its blocks are found.
  expect(await run("00000000000000aa")).toBeGreaterThan(0);
});

it("refuses a malformed salt like any malformed job", async () => {
  const job = { ...chatJob(), cacheSalt: "not-hex" };
  await worker.enqueue(job);
  const events = await worker.waitForEnd(job.id, 30_000);
  expect(events.at(-1)).toMatchObject({ type: "error", code: "invalid_job" });
});
