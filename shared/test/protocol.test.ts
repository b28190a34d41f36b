import { describe, expect, it } from "vitest";
import {
  PROTOCOL_VERSION, ProtocolVersionError, decodeStreamEvent, encodeStreamEvent, newCompletionId, parseChatJob,
  type ChatJob, type StreamEvent,
} from "../protocol.ts";
import { parseChatRequest } from "../request-schema.ts";
import { parseCompletionRequest } from "../completion-request-schema.ts";
import { MAX_N } from "../limits.ts";
import { estimatedCost, pricesFromVars } from "../pricing.ts";
import { redisKeys } from "../redis-keys.ts";

function job(): ChatJob {
  const parsed = parseChatRequest({ model: "microsoft/phi-4", messages: [{ role: "user", content: "Hi" }], seed: 7 });
  if (!parsed.ok) throw parsed.error;
  return { protocol: PROTOCOL_VERSION, id: newCompletionId(), created: 1_700_000_000, enqueuedAt: Date.now(), request: parsed.request };
}

describe("queue protocol", () => {
  it("round-trips every stream event through Redis stream fields", () => {
    const events: StreamEvent[] = [
      { type: "start", promptTokens: 12, n: 1, seed: "7", node: "node-a" },
      { type: "delta", index: 0, text: "Hé", tokens: [39, 978], logprobs: [{ token: "H", logprob: -0.1, bytes: [72], top_logprobs: [] }] },
      { type: "delta", index: 0, text: "", tokens: [100_265], finishReason: "stop" },
      { type: "done", finishReasons: ["stop"], usage: { promptTokens: 12, completionTokens: 3 } },
      { type: "error", status: 400, errorType: "invalid_request_error", code: "context_length_exceeded", message: "too long", param: "messages" },
    ];
    for (const e of events) expect(decodeStreamEvent(encodeStreamEvent(e))).toEqual(e);
  });

  it("fails loudly when the other side speaks another protocol version", () => {
    const fields = encodeStreamEvent({ type: "start", promptTokens: 1, n: 1, seed: "1", node: "x" });
    fields[1] = String(PROTOCOL_VERSION + 1);
    expect(() => decodeStreamEvent(fields)).toThrow(ProtocolVersionError);
    expect(() => parseChatJob({ ...job(), protocol: PROTOCOL_VERSION + 1 })).toThrow(/protocol version mismatch/);
    expect(() => parseChatJob({ request: {} })).toThrow(ProtocolVersionError);
  });

  it("accepts a job the Worker builds and names the bad field of a malformed one", () => {
    const good = job();
    expect(parseChatJob(JSON.parse(JSON.stringify(good)))).toEqual(JSON.parse(JSON.stringify(good)));
    const bad = JSON.parse(JSON.stringify(good));
    bad.request.temperature = "hot";
    expect(() => parseChatJob(bad)).toThrow(/request\.temperature/);
    expect(() => parseChatJob({ ...good, id: "bad id with spaces" })).toThrow(/id/);
  });

  it("accepts the largest legacy completions job the edge accepts (prompts × n = MAX_N, token-id prompts)", () => {
    const parsed = parseCompletionRequest({ model: "microsoft/phi-4", prompt: [[1, 2, 3], [100_351, 7]], n: MAX_N / 2 });
    if (!parsed.ok) throw parsed.error;
    const legacy: ChatJob = { protocol: PROTOCOL_VERSION, id: newCompletionId("cmpl"), created: 1_700_000_000, enqueuedAt: Date.now(), request: parsed.request };
    expect(parseChatJob(JSON.parse(JSON.stringify(legacy))).request.prompts).toEqual([[1, 2, 3], [100_351, 7]]);
  });

  it.each([
    ["n", (j: ChatJob) => { j.request.n = 1000; }, /request\.n/],
    ["maxTokens", (j: ChatJob) => { j.request.maxTokens = 10_000_000; }, /request\.maxTokens/],
    ["topLogprobs", (j: ChatJob) => { j.request.topLogprobs = 500; }, /request\.topLogprobs/],
    ["messages", (j: ChatJob) => { j.request.messages = Array.from({ length: 5000 }, () => ({ role: "user" as const, content: "x" })); }, /request\.messages/],
    ["content", (j: ChatJob) => { j.request.messages = [{ role: "user", content: "x".repeat(2_000_000) }]; }, /request\.messages/],
    ["stop", (j: ChatJob) => { j.request.stop = ["a", "b", "c", "d", "e"]; }, /request\.stop/],
    ["logitBias", (j: ChatJob) => { j.request.logitBias = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [String(i), 1])); }, /request\.logitBias/],
    ["seed", (j: ChatJob) => { j.request.seed = "99999999999999999999"; }, /request\.seed/],
    ["temperature", (j: ChatJob) => { j.request.temperature = 50; }, /request\.temperature/],
    ["prompts count", (j: ChatJob) => { j.request.prompts = Array.from({ length: MAX_N + 1 }, () => "x"); }, /request\.prompts/],
    ["prompts × n", (j: ChatJob) => { j.request.prompts = ["a", "b", "c"]; j.request.n = 6; }, /request\.prompts: prompts × n/],
    ["prompt length", (j: ChatJob) => { j.request.prompts = ["x".repeat(2_000_000)]; }, /request\.prompts/],
    ["prompt token ids", (j: ChatJob) => { j.request.prompts = [[1, 2, 10_000_000]]; }, /request\.prompts/],
    ["prompts in all", (j: ChatJob) => { j.request.prompts = Array.from({ length: 4 }, () => "x".repeat(400_000)); }, /request\.prompts: at most/],
  ])("re-checks the edge's upper bounds on a job (%s)", (_, spoil, message) => {
    const j = JSON.parse(JSON.stringify(job())) as ChatJob;
    spoil(j);
    expect(() => parseChatJob(j)).toThrow(message);
  });

  it("makes unique completion ids in OpenAI's style", () => {
    const ids = new Set(Array.from({ length: 1000 }, newCompletionId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^chatcmpl-[A-Za-z0-9]{18}$/);
  });
});

describe("pricing", () => {
  it("prices input and output tokens per million", () => {
    expect(estimatedCost(1_000_000, 0)).toBeCloseTo(0.07, 12);
    expect(estimatedCost(0, 1_000_000)).toBeCloseTo(0.14, 12);
    expect(estimatedCost(15, 16)).toBe(0.0000032900);
    expect(estimatedCost(15, 16, { inputPerMTok: 1, outputPerMTok: 2 })).toBe(0.000047);
  });

  it("reads prices from Worker vars and rejects nonsense", () => {
    expect(pricesFromVars({ PRICE_INPUT_PER_MTOK: "0.5", PRICE_OUTPUT_PER_MTOK: "1" })).toEqual({ inputPerMTok: 0.5, outputPerMTok: 1 });
    expect(() => pricesFromVars({ PRICE_INPUT_PER_MTOK: "cheap" })).toThrow(/non-negative/);
  });
});

describe("Redis keys", () => {
  it("puts every key under one prefix", () => {
    const k = redisKeys("tenant1");
    for (const key of [k.stream("a"), k.cancel("a"), k.meta("a"), k.owner("a"), k.starts("a"), k.cancelChannel, k.rateWindow("h", "rpm", 5), k.concurrency("h")]) {
      expect(key.startsWith("tenant1:")).toBe(true);
    }
    expect(new Set([k.stream("a"), k.cancel("a"), k.meta("a")]).size).toBe(3);
    expect(() => redisKeys("bad prefix")).toThrow(/invalid Redis prefix/);
  });
});
