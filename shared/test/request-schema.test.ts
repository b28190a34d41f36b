import { describe, expect, it } from "vitest";
import { parseChatRequest } from "../request-schema.ts";

const base = { model: "microsoft/phi-4", messages: [{ role: "user", content: "Hi" }] };

function rejects(body: unknown, param: string | null) {
  const r = parseChatRequest(body);
  expect(r.ok, JSON.stringify(body).slice(0, 200)).toBe(false);
  if (!r.ok) {
    expect(r.error.status).toBe(400);
    expect(r.error.toBody().error.type).toBe("invalid_request_error");
    expect(r.error.param).toBe(param);
    expect(r.error.message.length).toBeGreaterThan(5);
  }
}

function accepts(body: unknown) {
  const r = parseChatRequest(body);
  if (!r.ok) throw new Error(`rejected: ${r.error.param}: ${r.error.message}`);
  return r.request;
}

// [param, inside values, at-bound values, just-outside values]
const bounds: Array<[string, unknown[], unknown[], unknown[]]> = [
  ["temperature", [0.7, 1.5], [0, 2], [-0.0001, 2.0001, "1", Number.NaN]],
  ["top_p", [0.5, 0.95], [1, Number.MIN_VALUE], [0, 1.0001, -1]],
  ["min_p", [0.05, 0.5], [0, 1], [-0.01, 1.01]],
  ["top_k", [1, 40], [0, 999], [-1, 1000, 2.5]],
  ["presence_penalty", [-1, 1.5], [-2, 2], [-2.01, 2.01]],
  ["frequency_penalty", [-0.5, 0.5], [-2, 2], [-2.01, 2.01]],
  ["repetition_penalty", [1.1, 0.5], [0.01, 5], [0.0099, 5.01, 0]],
  ["max_tokens", [1, 100], [0, 16384], [-1, 16385, 1.5]],
  ["max_completion_tokens", [1, 100], [0, 16384], [-1, 16385, 7.25]],
  ["seed", [42, 2 ** 53], [0, 2 ** 63 - 4096], [-1, 2 ** 63, 1.5, "7"]],
  ["n", [2, 4], [1, 16], [0, 17, 1.5]],
  ["top_logprobs", [5], [0, 20], [-1, 21]],
];

describe("request schema: every parameter's bounds", () => {
  for (const [param, inside, at, outside] of bounds) {
    const extra = param === "top_logprobs" ? { logprobs: true } : {};
    it(`${param}: accepts inside and at the bounds, rejects just outside`, () => {
      for (const v of [...inside, ...at]) accepts({ ...base, ...extra, [param]: v });
      for (const v of outside) rejects({ ...base, ...extra, [param]: v }, param);
    });
  }

  it("applies the defaults of docs/api.md", () => {
    const r = accepts(base);
    expect(r).toMatchObject({
      temperature: 1, topP: 1, minP: 0, topK: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1,
      seed: null, stop: [], n: 1, logprobs: false, topLogprobs: 0, stream: false, includeUsage: false, maxTokens: null,
      toolChoice: "none", tools: [], responseFormat: { type: "text" }, prompts: null, echo: false,
    });
  });

  it("carries seeds up to 2^63 exactly as decimal strings", () => {
    expect(accepts({ ...base, seed: 0 }).seed).toBe("0");
    expect(accepts({ ...base, seed: 2 ** 62 }).seed).toBe("4611686018427387904");
  });

  it("prefers max_completion_tokens over max_tokens", () => {
    expect(accepts({ ...base, max_tokens: 5, max_completion_tokens: 9 }).maxTokens).toBe(9);
    expect(accepts({ ...base, max_tokens: 5 }).maxTokens).toBe(5);
  });

  it("takes stop as a string or up to 4 non-empty strings", () => {
    expect(accepts({ ...base, stop: "END" }).stop).toEqual(["END"]);
    expect(accepts({ ...base, stop: ["a", "b", "c", "d"] }).stop).toHaveLength(4);
    rejects({ ...base, stop: ["a", "b", "c", "d", "e"] }, "stop");
    rejects({ ...base, stop: "" }, "stop");
    rejects({ ...base, stop: 5 }, "stop");
    rejects({ ...base, stop: ["ok", 3] }, "stop");
  });

  it("takes tool_choice none, auto, required or a named function in 'tools'", () => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
    expect(accepts({ ...base, tools }).toolChoice).toBe("auto");
    expect(accepts({ ...base, tools, tool_choice: "none" }).toolChoice).toBe("none");
    expect(accepts({ ...base, tools, tool_choice: "required" }).toolChoice).toBe("required");
    expect(accepts({ ...base, tools, tool_choice: { type: "function", function: { name: "get_weather" } } }).toolChoice).toEqual({ name: "get_weather" });
    rejects({ ...base, tools, tool_choice: { type: "function", function: { name: "get_time" } } }, "tool_choice.function.name");
    rejects({ ...base, tools, tool_choice: "always" }, "tool_choice");
    rejects({ ...base, tool_choice: "required" }, "tool_choice");
    rejects({ ...base, tool_choice: { type: "function" } }, "tool_choice");
  });

  it("checks logit_bias keys and values", () => {
    expect(accepts({ ...base, logit_bias: { "50256": -100, "0": 100, "100351": 3 } }).logitBias).toEqual({ 50256: -100, 0: 100, 100351: 3 });
    rejects({ ...base, logit_bias: { "100352": 1 } }, "logit_bias.100352");
    rejects({ ...base, logit_bias: { abc: 1 } }, "logit_bias.abc");
    rejects({ ...base, logit_bias: { "5": 100.5 } }, "logit_bias.5");
    rejects({ ...base, logit_bias: { "5": -101 } }, "logit_bias.5");
    rejects({ ...base, logit_bias: [1, 2] }, "logit_bias");
  });

  it("requires logprobs for top_logprobs and stream for stream_options", () => {
    rejects({ ...base, top_logprobs: 3 }, "top_logprobs");
    expect(accepts({ ...base, logprobs: true, top_logprobs: 3 }).topLogprobs).toBe(3);
    rejects({ ...base, stream_options: { include_usage: true } }, "stream_options");
    expect(accepts({ ...base, stream: true, stream_options: { include_usage: true } }).includeUsage).toBe(true);
    rejects({ ...base, stream: "yes" }, "stream");
    rejects({ ...base, stream: true, stream_options: { include_usage: 1 } }, "stream_options.include_usage");
  });

  it("takes user as an opaque string", () => {
    expect(accepts({ ...base, user: "u-123" }).user).toBe("u-123");
    rejects({ ...base, user: 5 }, "user");
    rejects({ ...base, user: "x".repeat(257) }, "user");
  });

  it("treats null optional parameters as absent, as OpenAI does", () => {
    expect(accepts({ ...base, temperature: null, max_tokens: null, stop: null }).temperature).toBe(1);
  });
});

describe("request schema: message rules", () => {
  const msgs = (...m: unknown[]) => ({ model: "microsoft/phi-4", messages: m });

  it("requires model and messages", () => {
    rejects({ messages: base.messages }, "model");
    rejects({ model: "microsoft/phi-4" }, "messages");
    rejects(msgs(), "messages");
    rejects({ ...base, model: 7 }, "model");
    rejects("just a string", null);
    rejects(null, null);
    rejects([base], null);
  });

  it("names the missing parameter with OpenAI's code", () => {
    const r = parseChatRequest({ messages: base.messages });
    expect(!r.ok && r.error.code).toBe("missing_required_parameter");
  });

  it("accepts the four roles, with the one system message anywhere", () => {
    accepts(msgs({ role: "user", content: "a" }, { role: "system", content: "s" }, { role: "assistant", content: "b" }, { role: "tool", content: "r", tool_call_id: "c1" }));
    accepts(msgs({ role: "system", content: "s" }, { role: "user", content: "a" }));
  });

  it("rejects an unknown role, naming the message", () => {
    rejects(msgs({ role: "user", content: "a" }, { role: "bot", content: "b" }, { role: "user", content: "c" }), "messages[1].role");
    rejects(msgs({ role: "developer", content: "a" }, { role: "user", content: "c" }), "messages[0].role");
  });

  it("allows at most one system message", () => {
    rejects(msgs({ role: "system", content: "a" }, { role: "user", content: "b" }, { role: "system", content: "c" }, { role: "user", content: "d" }), "messages");
  });

  it("requires at least one user message", () => {
    rejects(msgs({ role: "system", content: "a" }, { role: "tool", content: "b", tool_call_id: "c" }), "messages");
  });

  it("requires the last message to be user or tool", () => {
    rejects(msgs({ role: "user", content: "a" }, { role: "assistant", content: "b" }), "messages[1].role");
    rejects(msgs({ role: "user", content: "a" }, { role: "system", content: "b" }), "messages[1].role");
    accepts(msgs({ role: "user", content: "a" }, { role: "tool", content: "b", tool_call_id: "c" }));
  });

  it("joins text parts and rejects non-text parts", () => {
    const r = accepts(msgs({ role: "user", content: [{ type: "text", text: "Hello " }, { type: "text", text: "there" }] }));
    expect(r.messages[0].content).toBe("Hello there");
    rejects(msgs({ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }), "messages[0].content");
    rejects(msgs({ role: "user", content: 42 }), "messages[0].content");
    rejects(msgs("hello"), "messages[0]");
  });
});
