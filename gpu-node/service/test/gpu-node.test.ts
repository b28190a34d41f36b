/**
 * One GPU node process, real Redis, real engine: what a Worker sees in a request's stream for good
 * jobs, bad jobs and cancelled ones, and what an operator sees on the status port.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROTOCOL_VERSION, type StreamEvent } from "../../../shared/protocol.ts";
import { STREAM_TTL_SECONDS } from "../../../shared/redis-keys.ts";
import { chatJob, TestWorker, uniquePrefix } from "../../../stack/chat-jobs.ts";
import { startNode, type NodeProcess } from "../../../stack/node-process.ts";
import { cachedTinyModel } from "../../model/tiny-model.ts";

let worker: TestWorker;
let node: NodeProcess;

beforeAll(async () => {
  worker = new TestWorker(uniquePrefix("node"));
  node = await startNode({ prefix: worker.prefix, modelDir: await cachedTinyModel(), name: "node-a" });
});

afterAll(async () => {
  await node?.stop();
  await worker?.cleanup();
});

type Delta = Extract<StreamEvent, { type: "delta" }>;

describe("a queued job", () => {
  it("streams start, one delta per token, then done, and the job completes", async () => {
    const job = chatJob({ maxTokens: 8 });
    await worker.enqueue(job);
    const events = await worker.waitForEnd(job.id);

    const [start, ...rest] = events;
    expect(start).toMatchObject({ type: "start", n: 1, seed: "7", node: "node-a" });
    const promptTokens = (start as Extract<StreamEvent, { type: "start" }>).promptTokens;
    expect(promptTokens).toBeGreaterThan(5);
    const deltas = rest.filter((e): e is Delta => e.type === "delta");
    expect(deltas).toHaveLength(8);
    for (const d of deltas) expect(d.tokens).toHaveLength(1);
    expect(deltas.slice(0, -1).every((d) => d.finishReason === undefined)).toBe(true);
    expect(deltas.at(-1)!.finishReason).toBe("length");
    expect(events.at(-1)).toEqual({ type: "done", finishReasons: ["length"], usage: { promptTokens, completionTokens: 8 } });
    expect(events.filter((e) => e.type === "start")).toHaveLength(1);

    const raw = await worker.redis.xrange(worker.keys.stream(job.id), "-", "+");
    expect(raw.every(([, fields]) => fields[0] === "v" && fields[1] === String(PROTOCOL_VERSION))).toBe(true);
    const ttl = await worker.redis.ttl(worker.keys.stream(job.id));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(STREAM_TTL_SECONDS);
    await expect.poll(() => worker.queue.getJobState(job.id)).toBe("completed");
  });

  it("runs every choice of n > 1 and counts them all in usage", async () => {
    const job = chatJob({ maxTokens: 5, n: 3 });
    await worker.enqueue(job);
    const events = await worker.waitForEnd(job.id);
    for (let i = 0; i < 3; i++) {
      const mine = events.filter((e): e is Delta => e.type === "delta" && e.index === i);
      expect(mine.reduce((t, d) => t + d.tokens.length, 0)).toBe(5);
      expect(mine.filter((d) => d.finishReason !== undefined)).toHaveLength(1);
    }
    expect(events.at(-1)).toMatchObject({ type: "done", finishReasons: ["length", "length", "length"], usage: { completionTokens: 15 } });
  });

  it("with a seed, gives the same text every time", async () => {
    const a = chatJob({ maxTokens: 12, seed: "123456789" });
    const b = chatJob({ maxTokens: 12, seed: "123456789" });
    await worker.enqueue(a);
    await worker.enqueue(b);
    const [ea, eb] = await Promise.all([worker.waitForEnd(a.id), worker.waitForEnd(b.id)]);
    const text = (es: StreamEvent[]) => es.map((e) => (e.type === "delta" ? e.text : "")).join("");
    expect(text(ea).length).toBeGreaterThan(0);
    expect(text(ea)).toBe(text(eb));
  });
});

describe("a bad job", () => {
  async function expectRefused(data: Record<string, unknown>, id: string, expected: Partial<Extract<StreamEvent, { type: "error" }>>) {
    await worker.enqueue(data, id);
    const events = await worker.waitForEnd(id);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "error", ...expected });
    await expect.poll(() => worker.queue.getJobState(id)).toBe("failed");
    const job = await worker.queue.getJob(id);
    expect(job!.attemptsMade).toBe(1); // failed for good although 3 attempts were allowed
  }

  it("that fails the schema gets an invalid_job error, fails without retry, and the node keeps serving", async () => {
    const good = chatJob({ maxTokens: 3 });
    const broken = { ...chatJob(), request: { ...good.request, messages: "not a list" } };
    await expectRefused(broken, broken.id, { status: 400, errorType: "invalid_request_error", code: "invalid_job" });
    const [error] = await worker.events(broken.id);
    expect((error as { message: string }).message).toContain("request.messages");

    await worker.enqueue(good);
    expect((await worker.waitForEnd(good.id)).at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 3 } });
  });

  it("from a Worker of another protocol version gets protocol_mismatch", async () => {
    const job = { ...chatJob(), protocol: PROTOCOL_VERSION + 1 };
    await expectRefused(job, job.id, { status: 500, errorType: "server_error", code: "protocol_mismatch" });
  });

  it("naming another model gets OpenAI's model_not_found", async () => {
    const job = chatJob({ model: "gpt-4o" });
    await expectRefused(job as unknown as Record<string, unknown>, job.id, { status: 404, errorType: "invalid_request_error", code: "model_not_found", param: "model" });
  });

  it("asking for more tokens than the context holds gets context_length_exceeded", async () => {
    const job = chatJob({ maxTokens: 4096 }); // the node's KV_CACHE_TOKENS=4096 bounds its context
    await expectRefused(job as unknown as Record<string, unknown>, job.id, { status: 400, code: "context_length_exceeded", param: "messages" });
  });
});

describe("cancellation", () => {
  it("ends a running request with done+cancelled and frees its KV blocks", async () => {
    const cancelledBefore = await node.metric("phi4_requests_total", { outcome: "cancelled" });
    const job = chatJob({ maxTokens: 3000 });
    await worker.enqueue(job);
    await worker.waitForDeltas(job.id, 3);
    expect(await node.metric("phi4_kv_blocks_used")).toBeGreaterThan(0);

    await worker.cancel(job.id);
    const events = await worker.waitForEnd(job.id, 5000);
    const done = events.at(-1) as Extract<StreamEvent, { type: "done" }>;
    expect(done).toMatchObject({ type: "done", cancelled: true });
    expect(done.usage.completionTokens).toBeLessThan(3000);
    expect(done.usage.completionTokens).toBe(events.filter((e) => e.type === "delta").length);
    await expect.poll(() => node.metric("phi4_kv_blocks_used")).toBe(0);
    await expect.poll(() => worker.queue.getJobState(job.id)).toBe("completed");
    expect(await node.metric("phi4_requests_total", { outcome: "cancelled" })).toBe(cancelledBefore + 1);
  });

  it("raised before pickup stops the request at once", async () => {
    const job = chatJob({ maxTokens: 3000 });
    await worker.cancel(job.id);
    await worker.enqueue(job);
    const events = await worker.waitForEnd(job.id, 5000);
    expect(events.at(-1)).toMatchObject({ type: "done", cancelled: true });
    expect(events.filter((e) => e.type === "delta").length).toBeLessThan(5);
  });
});

describe("the status port", () => {
  it("answers /health, /ready and /metrics", async () => {
    expect(await node.get("/health")).toMatchObject({ status: 200 });
    expect(await node.get("/ready")).toMatchObject({ status: 200 });
    const { status, body } = await node.get("/metrics");
    expect(status).toBe(200);
    for (const name of [
      "phi4_requests_total", "phi4_prompt_tokens_total", "phi4_generation_tokens_total",
      "phi4_time_to_first_token_seconds_bucket", "phi4_inter_token_latency_seconds_bucket",
      "phi4_e2e_request_latency_seconds_bucket", "phi4_queue_wait_seconds_bucket",
      "phi4_running_sequences", "phi4_waiting_sequences", "phi4_kv_blocks_used", "phi4_kv_blocks_total",
      "phi4_prefix_cache_hit_rate", "phi4_preemptions_total",
    ]) expect(body).toContain(name);
    expect(await node.metric("phi4_kv_blocks_total")).toBe(4096 / 16);
  });

  it("counts this test's own requests: one completed, one rejected, and their tokens", async () => {
    // Deltas against values read first, so the test holds alone, after the others, or in any order.
    const count = async () => ({
      completed: await node.metric("phi4_requests_total", { outcome: "completed" }),
      rejected: await node.metric("phi4_requests_total", { outcome: "rejected" }),
      generated: await node.metric("phi4_generation_tokens_total"),
      prompt: await node.metric("phi4_prompt_tokens_total"),
    });
    const before = await count();
    const good = chatJob({ maxTokens: 6 });
    const refused = chatJob({ model: "gpt-4o" });
    await worker.enqueue(good);
    await worker.enqueue(refused as unknown as Record<string, unknown>);
    const [events] = await Promise.all([worker.waitForEnd(good.id), worker.waitForEnd(refused.id)]);
    const start = events[0] as Extract<StreamEvent, { type: "start" }>;
    await expect.poll(async () => (await count()).completed).toBe(before.completed + 1);
    const after = await count();
    expect(after.rejected).toBe(before.rejected + 1);
    expect(after.generated).toBe(before.generated + 6);
    expect(after.prompt).toBe(before.prompt + start.promptTokens);
  });

  it("logs request ids and counts, never prompt text", async () => {
    const secret = "a prompt that must never reach a log line";
    const job = chatJob({ maxTokens: 2, messages: [{ role: "user", content: secret }] });
    await worker.enqueue(job);
    await worker.waitForEnd(job.id);
    const finished = await node.waitForLog((l) => l.msg === "job finished" && JSON.stringify(l).includes(job.id));
    expect(finished).toBeDefined();
    expect(JSON.stringify(node.logs)).not.toContain(secret);
  });
});

describe("the node registry", () => {
  it("announces a ready node, and withdraws it at shutdown so the edge stops queueing for it", async () => {
    const registry = new TestWorker(uniquePrefix("registry"));
    const announced = await startNode({ prefix: registry.prefix, modelDir: await cachedTinyModel(), name: "node-reg" });
    try {
      expect(await registry.redis.zscore(registry.keys.nodes, "node-reg")).not.toBeNull();
      const [seconds] = await registry.redis.time();
      expect(Number(await registry.redis.zscore(registry.keys.nodes, "node-reg"))).toBeGreaterThan(Number(seconds) * 1000 - 15_000);
      announced.child.kill("SIGTERM");
      const exit = await announced.exited;
      expect(exit, `exit after SIGTERM; stderr: ${announced.stderr.slice(-2000)}`).toEqual({ code: 0, signal: null });
    } finally {
      await announced.stop();
    }
    expect(await registry.redis.zscore(registry.keys.nodes, "node-reg")).toBeNull();
    await registry.cleanup();
  });
});
