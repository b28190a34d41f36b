/**
 * The node re-checks what it takes off the queue: a job over the edge's upper bounds is refused as
 * invalid_job before it reaches the engine, and a prompt far past the context window is refused
 * without being tokenized in full on the engine thread.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { NodeTestbed } from "./node-testbed.ts";
import { chatJob, type TestWorker } from "../../../stack/chat-jobs.ts";

const bed = new NodeTestbed();
let worker: TestWorker;

beforeAll(async () => {
  worker = bed.queue("bounds");
  await bed.node(worker, "bounds");
});

afterAll(() => bed.close());

it.each([
  ["n", { n: 5000 }],
  ["maxTokens", { maxTokens: 50_000_000 }],
  ["topLogprobs", { topLogprobs: 1000 }],
])("refuses a job over the bound on %s as invalid_job", async (field, overrides) => {
  const job = chatJob(overrides);
  await worker.enqueue(job);
  const events = await worker.waitForEnd(job.id, 30_000);
  expect(events).toHaveLength(1);
  expect(events[0]).toMatchObject({ type: "error", status: 400, code: "invalid_job" });
  expect((events[0] as { message: string }).message).toContain(`request.${field}`);
});

it("refuses a ~1 MiB prompt after tokenizing only past the context window", async () => {
  const job = chatJob({ maxTokens: 4, messages: [{ role: "user", content: "lorem ipsum dolor sit amet ".repeat(38_000) }] });
  await worker.enqueue(job);
  const events = await worker.waitForEnd(job.id, 60_000);
  expect(events.at(-1)).toMatchObject({ type: "error", status: 400, code: "context_length_exceeded", param: "messages" });
  // The count it names is a bound, not the full (never computed) prompt length.
  expect((events.at(-1) as { message: string }).message).toMatch(/more than 4096 in the messages/);
});
