import { describe, expect, it } from "vitest";
import { parseChatRequest } from "../request-schema.ts";
import { parseCompletionRequest, LEGACY_DEFAULT_MAX_TOKENS } from "../completion-request-schema.ts";
import { checkJsonSchema } from "../json-schema-support.ts";

const base = { model: "microsoft/phi-4", messages: [{ role: "user", content: "Hi" }] };
const weather = { type: "function", function: { name: "get_weather", description: "Weather now", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } };

function rejected(r: ReturnType<typeof parseChatRequest>) {
  if (r.ok) throw new Error("accepted");
  expect(r.error.status).toBe(400);
  return r.error;
}

function accepted(r: ReturnType<typeof parseChatRequest>) {
  if (!r.ok) throw new Error(`rejected: ${r.error.param}: ${r.error.message}`);
  return r.request;
}

describe("messages: what each role needs", () => {
  it("rejects a user or system message without content", () => {
    expect(rejected(parseChatRequest({ ...base, messages: [{ role: "user" }] })).param).toBe("messages[0].content");
    expect(rejected(parseChatRequest({ ...base, messages: [{ role: "system", content: null }, { role: "user", content: "a" }] })).param).toBe("messages[0].content");
  });

  it("rejects a tool message without tool_call_id", () => {
    const e = rejected(parseChatRequest({ ...base, messages: [{ role: "user", content: "a" }, { role: "tool", content: "20C" }] }));
    expect(e.param).toBe("messages[1].tool_call_id");
    expect(e.code).toBe("missing_required_parameter");
  });

  it("accepts an assistant turn with tool_calls and no content, and carries the calls", () => {
    const call = { id: "call_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Oslo\"}" } };
    const r = accepted(parseChatRequest({
      ...base, tools: [weather],
      messages: [{ role: "user", content: "Weather?" }, { role: "assistant", content: null, tool_calls: [call] }, { role: "tool", tool_call_id: "call_1", content: "3C" }],
    }));
    expect(r.messages[1].tool_calls).toEqual([call]);
    expect(r.messages[1].content).toBe("");
    expect(rejected(parseChatRequest({ ...base, messages: [{ role: "user", content: "a" }, { role: "assistant" }, { role: "user", content: "b" }] })).param).toBe("messages[1].content");
    expect(rejected(parseChatRequest({ ...base, messages: [{ role: "user", content: "a", tool_calls: [call] }] })).param).toBe("messages[0].tool_calls");
  });
});

describe("tools", () => {
  it("canonicalises function tools", () => {
    const r = accepted(parseChatRequest({ ...base, tools: [weather, { type: "function", function: { name: "now" } }] }));
    expect(r.tools).toEqual([
      { name: "get_weather", description: "Weather now", parameters: weather.function.parameters, strict: false },
      { name: "now", description: null, parameters: { type: "object", properties: {} }, strict: false },
    ]);
  });

  it("rejects bad names, duplicates and unsupported schema keywords", () => {
    expect(rejected(parseChatRequest({ ...base, tools: [{ type: "function", function: { name: "has space" } }] })).param).toBe("tools[0].function.name");
    expect(rejected(parseChatRequest({ ...base, tools: [weather, weather] })).param).toBe("tools[1].function.name");
    const e = rejected(parseChatRequest({ ...base, tools: [{ type: "function", function: { name: "f", parameters: { type: "object", not: {}, uniqueItems: true } } }] }));
    expect(e.param).toBe("tools[0].function.parameters");
    expect(e.message).toContain("'not'");
    expect(e.message).toContain("'uniqueItems'");
  });
});

describe("response_format", () => {
  it("takes text, json_object and json_schema", () => {
    expect(accepted(parseChatRequest({ ...base, response_format: { type: "text" } })).responseFormat).toEqual({ type: "text" });
    expect(accepted(parseChatRequest({ ...base, response_format: { type: "json_object" } })).responseFormat).toEqual({ type: "json_object" });
    const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"], additionalProperties: false };
    expect(accepted(parseChatRequest({ ...base, response_format: { type: "json_schema", json_schema: { name: "thing", schema, strict: true } } })).responseFormat)
      .toEqual({ type: "json_schema", name: "thing", schema, strict: true });
  });

  it("answers an unenforceable schema with a 400 pointing into response_format", () => {
    const e = rejected(parseChatRequest({ ...base, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", if: {}, then: {} } } } }));
    expect(e.param).toBe("response_format.json_schema.schema");
    expect(e.message).toMatch(/'if', 'then'/);
    expect(rejected(parseChatRequest({ ...base, response_format: { type: "yaml" } })).param).toBe("response_format.type");
    expect(rejected(parseChatRequest({ ...base, response_format: { type: "json_schema", json_schema: { name: "x", schema: { $ref: "#/$defs/missing" } } } })).param)
      .toBe("response_format.json_schema.schema");
  });
});

describe("json schema support", () => {
  it("walks nested schemas and reports paths", () => {
    expect(checkJsonSchema({ type: "object", properties: { a: { type: "array", items: { type: "strin" } } } }).problems[0].path).toBe("properties.a.items.type");
    expect(checkJsonSchema({ $defs: { n: { type: "integer" } }, type: "object", properties: { n: { $ref: "#/$defs/n" } } })).toEqual({ problems: [], unsupported: [] });
    expect(checkJsonSchema({ type: "string", minLength: 5, maxLength: 2 }).problems).toHaveLength(1);
    expect(checkJsonSchema({ type: "string", pattern: "(" }).problems).toHaveLength(1);
  });

  it("refuses what the grammar engine cannot compile: lookarounds, backreferences, \\b, \\p{…}, fractional integer bounds, empty ranges, false", () => {
    for (const pattern of ["(?=a)b", "(?!a)b", "(?<=a)b", "(?<!a)b", "(a)\\1", "(?<n>a)\\k<n>", "\\bfoo", "x\\B", "\\p{L}+"]) {
      expect(checkJsonSchema({ type: "string", pattern }).problems, pattern).toHaveLength(1);
    }
    for (const pattern of ["(?:ab)+", "(?<n>a)", "\\\\b", "^\\d{3}-[a-z]+$", "a|b"]) {
      expect(checkJsonSchema({ type: "string", pattern }).problems, pattern).toEqual([]);
    }
    expect(checkJsonSchema({ type: "integer", minimum: 0.5 }).problems).toHaveLength(1);
    expect(checkJsonSchema({ type: "number", minimum: 0.5, maximum: 2.5 }).problems).toEqual([]);
    expect(checkJsonSchema({ type: "integer", minimum: 5, maximum: 1 }).problems).toHaveLength(1);
    expect(checkJsonSchema(false).problems).toHaveLength(1);
  });
});

describe("legacy completions request", () => {
  const legacy = { model: "microsoft/phi-4", prompt: "Once upon a time" };

  it("takes a string, strings, token ids or lists of token ids", () => {
    const r = accepted(parseCompletionRequest(legacy));
    expect(r.prompts).toEqual(["Once upon a time"]);
    expect(r.messages).toEqual([]);
    expect(r.maxTokens).toBe(LEGACY_DEFAULT_MAX_TOKENS);
    expect(accepted(parseCompletionRequest({ ...legacy, prompt: ["a", "b"] })).prompts).toEqual(["a", "b"]);
    expect(accepted(parseCompletionRequest({ ...legacy, prompt: [1, 2, 3] })).prompts).toEqual([[1, 2, 3]]);
    expect(accepted(parseCompletionRequest({ ...legacy, prompt: [[1], [2, 3]] })).prompts).toEqual([[1], [2, 3]]);
  });

  it("maps logprobs (an integer) and echo", () => {
    const r = accepted(parseCompletionRequest({ ...legacy, logprobs: 3, max_tokens: 4, top_k: 5 }));
    expect(r).toMatchObject({ logprobs: true, topLogprobs: 3, maxTokens: 4, topK: 5, echo: false });
    expect(accepted(parseCompletionRequest({ ...legacy, echo: true })).echo).toBe(true);
  });

  it("refuses suffix, best_of other than n, bad prompts, too many choices", () => {
    expect(rejected(parseCompletionRequest({ ...legacy, suffix: "end" })).param).toBe("suffix");
    expect(rejected(parseCompletionRequest({ ...legacy, best_of: 3, n: 1 })).param).toBe("best_of");
    accepted(parseCompletionRequest({ ...legacy, best_of: 2, n: 2 }));
    expect(rejected(parseCompletionRequest({ model: "microsoft/phi-4" })).param).toBe("prompt");
    expect(rejected(parseCompletionRequest({ ...legacy, prompt: "" })).param).toBe("prompt");
    expect(rejected(parseCompletionRequest({ ...legacy, prompt: [1, 100352] })).param).toMatch(/^prompt/);
    expect(rejected(parseCompletionRequest({ ...legacy, prompt: ["a", "b", "c"], n: 6 })).param).toBe("prompt");
    expect(rejected(parseCompletionRequest({ ...legacy, logprobs: 6 })).param).toBe("logprobs");
    expect(rejected(parseCompletionRequest({ ...legacy, logprobs: 1, echo: true })).param).toBe("echo");
  });
});
