import { afterAll, describe, expect, it } from "vitest";
import { isErrorBody } from "../../shared/errors.ts";
import type { ChatCompletion, ChatCompletionChunk } from "../../shared/openai-types.ts";
import { PROTOCOL_VERSION } from "../../shared/protocol.ts";
import { estimatedCost } from "../../shared/pricing.ts";
import { sha256Hex } from "../api-key.ts";
import { answer, EdgeHarness, hello, readSSE } from "./harness.ts";

const edge = new EdgeHarness("chat");
afterAll(() => edge.close());

describe("POST /v1/chat/completions, non-streaming", () => {
  it("enqueues a versioned job whose id is the completion id and answers one chat.completion with usage and cost", async () => {
    const responding = edge.chat(hello({ user: "end-user-17", temperature: 0.5 }));
    const job = await edge.nextJob();
    expect(job.protocol).toBe(PROTOCOL_VERSION);
    expect(job.id).toMatch(/^chatcmpl-[A-Za-z0-9]+$/);
    expect(job.request.temperature).toBe(0.5);
    expect(job.request.user).toBe(await sha256Hex("end-user-17"));
    await edge.publish(job.id, ...answer(["Hel", "lo", "!"], 9));

    const response = await responding;
    expect(response.status).toBe(200);
    const body = await response.json() as ChatCompletion;
    expect(body).toMatchObject({
      id: job.id, object: "chat.completion", created: job.created, model: "microsoft/phi-4",
      choices: [{ index: 0, message: { role: "assistant", content: "Hello!" }, finish_reason: "stop", logprobs: null }],
      usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12, estimated_cost: estimatedCost(9, 3) },
    });
  });

  it("is served on the /v1/openai path too", async () => {
    const responding = edge.chat(hello(), undefined, "/v1/openai/chat/completions");
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["ok"]));
    expect(((await (await responding).json()) as ChatCompletion).choices[0].message.content).toBe("ok");
  });

  it("assembles n choices and their logprobs", async () => {
    const responding = edge.chat(hello({ n: 2, logprobs: true, top_logprobs: 1 }));
    const job = await edge.nextJob();
    const lp = (token: string) => ({ token, logprob: -0.5, bytes: [...new TextEncoder().encode(token)], top_logprobs: [{ token, logprob: -0.5, bytes: [...new TextEncoder().encode(token)] }] });
    await edge.publish(job.id,
      { type: "start", promptTokens: 5, n: 2, seed: "1", node: "t" },
      { type: "delta", index: 1, text: "B", tokens: [2], logprobs: [lp("B")] },
      { type: "delta", index: 0, text: "A", tokens: [1], logprobs: [lp("A")], finishReason: "length" },
      { type: "delta", index: 1, text: "b", tokens: [3], logprobs: [lp("b")], finishReason: "stop" },
      { type: "done", finishReasons: ["length", "stop"], usage: { promptTokens: 5, completionTokens: 3 } },
    );
    const body = await (await responding).json() as ChatCompletion;
    expect(body.choices.map((c) => [c.message.content, c.finish_reason])).toEqual([["A", "length"], ["Bb", "stop"]]);
    expect(body.choices[1].logprobs!.content.map((t) => t.token)).toEqual(["B", "b"]);
    expect(body.choices[1].logprobs!.content[0].top_logprobs[0]).toEqual({ token: "B", logprob: -0.5, bytes: [66] });
  });

  it("turns a node error into that HTTP status with OpenAI's error shape", async () => {
    const responding = edge.chat(hello());
    const job = await edge.nextJob();
    await edge.publish(job.id, { type: "error", status: 400, errorType: "invalid_request_error", code: "context_length_exceeded", message: "This model's maximum context length is 16384 tokens.", param: "messages" });
    const response = await responding;
    expect(response.status).toBe(400);
    const body = await response.json();
    expect(isErrorBody(body)).toBe(true);
    expect(body).toMatchObject({ error: { code: "context_length_exceeded", param: "messages", type: "invalid_request_error" } });
  });
});

describe("POST /v1/chat/completions, streaming", () => {
  it("relays chunks as OpenAI SSE: role first, content pieces, finish_reason only on the last, usage, [DONE]; every event has the entry id", async () => {
    const responding = edge.chat(hello({ stream: true, stream_options: { include_usage: true } }));
    const job = await edge.nextJob();
    const ids = await edge.publish(job.id, ...answer(["Hi", " there"], 4));
    const response = await responding;
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const { events } = await readSSE(response);

    expect(events.at(-1)!.data).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data) as ChatCompletionChunk);
    expect(chunks.every((c) => c.id === job.id && c.object === "chat.completion.chunk" && c.model === "microsoft/phi-4")).toBe(true);
    expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
    expect(chunks.slice(1, 3).map((c) => c.choices[0].delta.content)).toEqual(["Hi", " there"]);
    expect(chunks.slice(0, 3).map((c) => c.choices[0].finish_reason)).toEqual([null, null, "stop"]);
    expect(chunks.slice(0, 3).every((c) => c.usage === null)).toBe(true);
    const usage = chunks[3];
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual({ prompt_tokens: 4, completion_tokens: 2, total_tokens: 6, estimated_cost: estimatedCost(4, 2) });
    // start, two deltas, then done's usage chunk and [DONE]: each carries its stream entry's id.
    expect(events.map((e) => e.id)).toEqual([ids[0], ids[1], ids[2], ids[3], ids[3]]);
  });

  it("without include_usage sends no usage field and no usage chunk", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["x"]));
    const { events } = await readSSE(await responding);
    expect(events.map((e) => e.data === "[DONE]" ? "[DONE]" : "usage" in JSON.parse(e.data) ? "usage" : "chunk")).toEqual(["chunk", "chunk", "[DONE]"]);
  });

  it("answers a node error that comes before any token with the HTTP status, not a 200", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id,
      { type: "start", promptTokens: 20000, n: 1, seed: "1", node: "t" },
      { type: "error", status: 400, errorType: "invalid_request_error", code: "context_length_exceeded", message: "too long", param: "messages" });
    const response = await responding;
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "context_length_exceeded", param: "messages" } });
  });

  it("sends an error after tokens inside the stream, in OpenAI's shape, without [DONE]", async () => {
    const responding = edge.chat(hello({ stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id,
      { type: "start", promptTokens: 3, n: 1, seed: "1", node: "t" },
      { type: "delta", index: 0, text: "par", tokens: [1] },
      { type: "error", status: 500, errorType: "server_error", code: "node_failed", message: "the node failed", param: null });
    const { events } = await readSSE(await responding);
    expect(events.map((e) => e.data).at(-1)).toBe(JSON.stringify({ error: { message: "the node failed", type: "server_error", param: null, code: "node_failed" } }));
    expect(events.some((e) => e.data === "[DONE]")).toBe(false);
  });

  it("keeps the connection alive with SSE comments while the request waits in the queue", async () => {
    const responding = edge.chat(hello({ stream: true }), undefined, undefined, { SSE_HOLD_MS: "50", SSE_KEEPALIVE_MS: "100" });
    const job = await edge.nextJob();
    const response = await responding; // committed after the hold, before any event
    expect(response.status).toBe(200);
    const reading = readSSE(response);
    await new Promise((r) => setTimeout(r, 450));
    await edge.publish(job.id, ...answer(["late"]));
    const { events, comments } = await reading;
    expect(comments.length).toBeGreaterThanOrEqual(2);
    expect(comments[0].trim()).toBe("keep-alive");
    expect(events.at(-1)!.data).toBe("[DONE]");
    expect(JSON.parse(events[1].data).choices[0].delta.content).toBe("late");
  });

  it("interleaves n choices, each with finish_reason on its own last chunk", async () => {
    const responding = edge.chat(hello({ stream: true, n: 2 }));
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["a", "b"], 3, 2));
    const { events } = await readSSE(await responding);
    const chunks = events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data) as ChatCompletionChunk);
    expect(chunks[0].choices.map((c) => c.index)).toEqual([0, 1]);
    for (const index of [0, 1]) {
      const mine = chunks.slice(1).flatMap((c) => c.choices).filter((c) => c.index === index);
      expect(mine.map((c) => c.delta.content).join("")).toBe("ab");
      expect(mine.map((c) => c.finish_reason)).toEqual([null, "stop"]);
    }
  });
});

describe("a job BullMQ gave up on", () => {
  /** What BullMQ leaves behind after the last failed attempt: the job id in the failed set. */
  async function markFailed(id: string) {
    await edge.redis.multi().lrem(`${edge.keys.queuePrefix}:chat:wait`, 0, id).zadd(`${edge.keys.queuePrefix}:chat:failed`, Date.now(), id).exec();
  }

  it("ends a waiting non-streaming request with a 500 job_failed instead of waiting forever", async () => {
    const responding = edge.chat(hello(), undefined, undefined, { SSE_KEEPALIVE_MS: "100" });
    let id: string | undefined;
    for (let i = 0; i < 200 && !id; i++) {
      id = (await edge.redis.lrange(`${edge.keys.queuePrefix}:chat:wait`, 0, 0))[0];
      if (!id) await new Promise((r) => setTimeout(r, 10));
    }
    await markFailed(id!);
    const response = await responding;
    expect(response.status).toBe(500);
    expect(await response.json()).toMatchObject({ error: { type: "server_error", code: "job_failed" } });
  });

  it("ends an open stream with an in-stream job_failed error", async () => {
    const responding = edge.chat(hello({ stream: true }), undefined, undefined, { SSE_HOLD_MS: "10", SSE_KEEPALIVE_MS: "100" });
    const response = await responding;
    const id = response.headers.get("x-request-id")!;
    await markFailed(id);
    const { events } = await readSSE(response);
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ error: { code: "job_failed" } });
  });
});
