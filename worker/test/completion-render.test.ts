/** Stream events → OpenAI wire objects for tool calls and legacy text completions (pure rendering). */
import { describe, expect, it } from "vitest";
import { DEFAULT_PRICES } from "../../shared/pricing.ts";
import type { StreamEvent } from "../../shared/protocol.ts";
import type { CompletionMeta } from "../completion-meta.ts";
import { ChunkRenderer, CompletionAssembler } from "../completion-render.ts";
import { TextChunkRenderer, TextCompletionAssembler } from "../text-completion-render.ts";

const meta: CompletionMeta = { ownerKeyHash: "h", model: "microsoft/phi-4", created: 1, n: 1, logprobs: false, includeUsage: false };
type Delta = Extract<StreamEvent, { type: "delta" }>;
const done: Extract<StreamEvent, { type: "done" }> = { type: "done", finishReasons: ["tool_calls"], usage: { promptTokens: 10, completionTokens: 4 } };

const callDeltas: Delta[] = [
  { type: "delta", index: 0, text: "", tokens: [1], toolCalls: [{ index: 0, id: "call_a", type: "function", function: { name: "get_time", arguments: "" } }] },
  { type: "delta", index: 0, text: "", tokens: [2], toolCalls: [{ index: 0, function: { arguments: '{"zone": ' } }] },
  { type: "delta", index: 0, text: "", tokens: [3], toolCalls: [{ index: 0, function: { arguments: '"UTC"}' } }] },
  { type: "delta", index: 0, text: "", tokens: [4], finishReason: "tool_calls" },
];

describe("chat rendering of tool calls", () => {
  it("streams delta.tool_calls without a content field, then finish_reason tool_calls", () => {
    const r = new ChunkRenderer("chatcmpl-x", meta, DEFAULT_PRICES);
    const chunks = callDeltas.flatMap((e) => r.render(e)).map((s) => JSON.parse(s));
    expect(chunks[0].choices[0].delta).toEqual({ tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "get_time", arguments: "" } }] });
    expect(chunks[1].choices[0].delta).toEqual({ tool_calls: [{ index: 0, function: { arguments: '{"zone": ' } }] });
    expect(chunks[3].choices[0].finish_reason).toBe("tool_calls");
  });

  it("assembles message.tool_calls with content null", () => {
    const a = new CompletionAssembler("chatcmpl-x", meta, DEFAULT_PRICES);
    for (const e of callDeltas) a.add(e);
    const c = a.finish(done);
    expect(c.choices[0]).toMatchObject({
      finish_reason: "tool_calls",
      message: { role: "assistant", content: null, tool_calls: [{ id: "call_a", type: "function", function: { name: "get_time", arguments: '{"zone": "UTC"}' } }] },
    });
  });
});

describe("legacy text completions", () => {
  const textMeta: CompletionMeta = { ...meta, n: 2, logprobs: true, kind: "text" };
  const lp = (token: string, logprob: number) => ({ token, logprob, bytes: [], top_logprobs: [{ token, logprob, bytes: [] }, { token: "x", logprob: -9, bytes: [] }] });
  const deltas: Delta[] = [
    { type: "delta", index: 0, text: "Hello", tokens: [1], logprobs: [lp("Hello", -1)] },
    { type: "delta", index: 1, text: "A", tokens: [2], logprobs: [lp("A", -2)] },
    { type: "delta", index: 0, text: " world", tokens: [3], logprobs: [lp(" world", -0.5)], finishReason: "length" },
  ];

  it("assembles text_completion choices with legacy logprobs (parallel arrays, text offsets)", () => {
    const a = new TextCompletionAssembler("cmpl-x", textMeta, DEFAULT_PRICES);
    for (const e of deltas) a.add(e);
    const c = a.finish({ type: "done", finishReasons: ["length", "stop"], usage: { promptTokens: 3, completionTokens: 3 } });
    expect(c.object).toBe("text_completion");
    expect(c.choices[0]).toEqual({
      text: "Hello world", index: 0, finish_reason: "length",
      logprobs: { tokens: ["Hello", " world"], token_logprobs: [-1, -0.5], top_logprobs: [{ Hello: -1, x: -9 }, { " world": -0.5, x: -9 }], text_offset: [0, 5] },
    });
    expect(c.choices[1]).toMatchObject({ text: "A", finish_reason: "stop" });
    expect(c.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });
  });

  it("streams text_completion chunks, closes unfinished choices at done, then [DONE]", () => {
    const r = new TextChunkRenderer("cmpl-x", textMeta, DEFAULT_PRICES);
    expect(r.render({ type: "start", promptTokens: 3, n: 2, seed: "1", node: "n" })).toEqual([]);
    const out = deltas.flatMap((e) => r.render(e));
    const third = JSON.parse(out[2]);
    expect(third.choices[0]).toMatchObject({ index: 0, text: " world", finish_reason: "length", logprobs: { text_offset: [5] } });
    const end = r.render({ type: "done", finishReasons: ["length", "stop"], usage: { promptTokens: 3, completionTokens: 3 } });
    expect(end).toHaveLength(2);
    expect(JSON.parse(end[0]).choices[0]).toMatchObject({ index: 1, text: "", finish_reason: "stop" });
    expect(end[1]).toBe("[DONE]");
  });
});
