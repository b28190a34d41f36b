/**
 * Failover: a node killed with SIGKILL mid-generation. BullMQ's stalled-job check hands its jobs to
 * another node, which continues each stream from what it holds. Every request completes exactly once,
 * its stream has one `start`, no gap and no duplicate, and with a seed its text is the text of an
 * uninterrupted run.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { StreamEvent } from "../../../shared/protocol.ts";
import { chatJob, TestWorker, textsOf, uniquePrefix } from "../../../stack/chat-jobs.ts";
import { startNode, type NodeProcess } from "../../../stack/node-process.ts";
import { cachedTinyModel } from "../../model/tiny-model.ts";

// Short locks so a dead node's jobs come back within a second or two.
const FAST_STALL = { LOCK_DURATION_MS: "1000", STALLED_INTERVAL_MS: "300" };

let worker: TestWorker;
let modelDir: string;
const nodes: NodeProcess[] = [];

beforeAll(async () => {
  worker = new TestWorker(uniquePrefix("failover"));
  modelDir = await cachedTinyModel();
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await worker?.cleanup();
});

function tokensByChoice(events: StreamEvent[], n: number): number[][] {
  const tokens = Array.from({ length: n }, (): number[] => []);
  for (const e of events) if (e.type === "delta") tokens[e.index].push(...e.tokens);
  return tokens;
}

it("kill -9 mid-stream: another node finishes every request exactly once, text equal to an uninterrupted run", async () => {
  const a = await startNode({ prefix: worker.prefix, modelDir, name: "fo-a", env: FAST_STALL });
  nodes.push(a);
  const requests = [
    { maxTokens: 60, seed: "11", messages: [{ role: "user" as const, content: "Tell me about failover." }] },
    { maxTokens: 60, seed: "22", n: 2, messages: [{ role: "user" as const, content: "And about Redis streams?" }] },
    { maxTokens: 60, seed: "33", stop: ["e"], messages: [{ role: "user" as const, content: "Stop strings too." }] },
    { maxTokens: 60, seed: "44", temperature: 0, messages: [{ role: "user" as const, content: "Greedy one." }] },
  ];
  const jobs = requests.map((r) => chatJob(r));
  for (const job of jobs) await worker.enqueue(job);
  await worker.waitForDeltas(jobs[0].id, 5);
  a.child.kill("SIGKILL");
  await a.exited;
  const atKill = await Promise.all(jobs.map((job) => worker.events(job.id)));
  const unfinished = atKill.filter((events) => events.at(-1)?.type !== "done").length;
  expect(unfinished).toBeGreaterThan(0); // the kill did land mid-generation

  const b = await startNode({ prefix: worker.prefix, modelDir, name: "fo-b", env: FAST_STALL });
  nodes.push(b);
  const streams = await Promise.all(jobs.map((job) => worker.waitForEnd(job.id, 30_000)));

  // The same requests, uninterrupted, on the surviving node.
  const references = requests.map((r) => chatJob(r));
  for (const job of references) await worker.enqueue(job);
  const expected = await Promise.all(references.map((job) => worker.waitForEnd(job.id, 30_000)));

  for (let i = 0; i < jobs.length; i++) {
    const events = streams[i];
    const n = jobs[i].request.n;
    expect(events.filter((e) => e.type === "start")).toHaveLength(1);
    expect(events[0].type).toBe("start");
    expect(events.filter((e) => e.type === "done" || e.type === "error")).toEqual([events.at(-1)]);
    // The killed run's entries are the beginning of the final stream, untouched.
    expect(events.slice(0, atKill[i].length)).toEqual(atKill[i]);
    // No gap, no duplicate: the tokens are exactly an uninterrupted run's tokens.
    expect(tokensByChoice(events, n)).toEqual(tokensByChoice(expected[i], n));
    expect(textsOf(events, n)).toEqual(textsOf(expected[i], n));
    const done = events.at(-1) as Extract<StreamEvent, { type: "done" }>;
    expect(done).toEqual(expected[i].at(-1));
    expect(await worker.queue.getJobState(jobs[i].id)).toBe("completed");
  }
  expect(await b.metric("phi4_requests_resumed_total")).toBe(unfinished - atKill.filter((e) => e.length === 0).length);
  // B completed the references, every unfinished job, and any job A had streamed to its end but was killed before settling.
  const completedByB = await b.metric("phi4_requests_total", { outcome: "completed" });
  expect(completedByB).toBeGreaterThanOrEqual(unfinished + references.length);
  expect(completedByB).toBeLessThanOrEqual(jobs.length + references.length);
});
