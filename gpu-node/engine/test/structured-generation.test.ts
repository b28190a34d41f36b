/**
 * The engine with the tiny random model under a grammar: tool calls and JSON that parse and validate
 * (ajv), tool-call deltas, finish reasons, legacy prompts (several, token ids, echo), and replays.
 */
import Ajv from "ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ToolCallDelta } from "../../../shared/openai-types.ts";
import type { StreamEvent } from "../../../shared/protocol.ts";
import { phi4Tokenizer } from "../../tokenizer/phi4-tokenizer.ts";
import { completionRequest, EngineHarness } from "./engine-harness.ts";
import { buildTinyModel } from "./tiny-model-fixture.ts";

let model: { modelDir: string; cleanup: () => Promise<void> };
let h: EngineHarness;
const tok = phi4Tokenizer();
const ajv = new Ajv({ strict: false });

beforeAll(async () => {
  model = await buildTinyModel(7);
  h = await EngineHarness.create(model.modelDir);
}, 120_000);
afterAll(async () => {
  await h?.release();
  await model?.cleanup();
});

const weather = {
  type: "object",
  properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["celsius", "fahrenheit"] }, days: { type: "integer", minimum: 1, maximum: 7 } },
  required: ["city", "unit", "days"],
  additionalProperties: false,
};
const clock = { type: "object", properties: { zone: { type: "string", maxLength: 8 } }, required: ["zone"], additionalProperties: false };
const tools = [
  { type: "function", function: { name: "get_weather", parameters: weather, strict: true } },
  { type: "function", function: { name: "get_time", parameters: clock, strict: true } },
];

function callsOf(id: string, index = 0): Array<{ id: string; name: string; arguments: string }> {
  const calls: Array<{ id: string; name: string; arguments: string }> = [];
  for (const e of h.events.get(id) ?? []) {
    if (e.type !== "delta" || e.index !== index) continue;
    for (const d of (e.toolCalls ?? []) as ToolCallDelta[]) {
      if (d.id !== undefined) calls[d.index] = { id: d.id, name: d.function.name!, arguments: "" };
      calls[d.index].arguments += d.function.arguments;
    }
  }
  return calls;
}

function finishOf(id: string, index = 0): string | undefined {
  const delta = (h.events.get(id) ?? []).find((e): e is Extract<StreamEvent, { type: "delta" }> => e.type === "delta" && e.index === index && e.finishReason !== undefined);
  return delta?.finishReason;
}

describe("engine: tool calls", () => {
  it("tool_choice required: calls whose arguments validate, finish_reason tool_calls, no content", async () => {
    const validators = new Map([["get_weather", ajv.compile(weather)], ["get_time", ajv.compile(clock)]]);
    await h.submit("t1", { tools, tool_choice: "required", max_tokens: 400, seed: 1, n: 2 });
    await h.runUntilIdle();
    for (const index of [0, 1]) {
      const calls = callsOf("t1", index);
      expect(calls.length).toBeGreaterThan(0);
      for (const c of calls) {
        expect(c.id).toMatch(/^call_[A-Za-z0-9_-]{24}$/);
        const validate = validators.get(c.name)!;
        expect(validate(JSON.parse(c.arguments)), c.arguments).toBe(true);
      }
      expect(h.text("t1", index)).toBe("");
      expect(finishOf("t1", index)).toBe("tool_calls");
    }
    expect(h.last("t1")).toMatchObject({ type: "done", finishReasons: ["tool_calls", "tool_calls"] });
  }, 120_000);

  it("tool_choice auto: free text flows under the triggered grammar; without a begun call there are no tool_calls", async () => {
    await h.submit("t0", { tools, max_tokens: 24, seed: 9 });
    await h.runUntilIdle();
    const last = h.last("t0");
    expect(last).toMatchObject({ type: "done" });
    expect(callsOf("t0")).toEqual([]);
    expect(["length", "stop"]).toContain(finishOf("t0"));
    expect(h.text("t0")).toBe(tok.decode(h.tokens("t0")[0]));
  }, 120_000);

  it("a named function is the one call", async () => {
    await h.submit("t2", { tools, tool_choice: { type: "function", function: { name: "get_time" } }, max_tokens: 200, seed: 2 });
    await h.runUntilIdle();
    const calls = callsOf("t2");
    expect(calls.map((c) => c.name)).toEqual(["get_time"]);
    expect(ajv.validate(clock, JSON.parse(calls[0].arguments))).toBe(true);
  }, 120_000);

  it("replaying published tokens after a failover continues the grammar where it stood (same tokens)", async () => {
    await h.submit("t3", { tools, tool_choice: "required", max_tokens: 400, seed: 3 });
    await h.runUntilIdle();
    const tokens = h.tokens("t3")[0];
    const half = tokens.slice(0, Math.floor(tokens.length / 2));
    await h.submit("t3", { tools, tool_choice: "required", max_tokens: 400, seed: 3 }, { tokens: [half], finishReasons: [null] });
    await h.runUntilIdle();
    expect(h.tokens("t3")[0]).toEqual([...tokens, ...tokens.slice(half.length)]);
  }, 120_000);
});

describe("engine: response_format", () => {
  it("json_schema (strict, nested, arrays, enums): every choice parses and validates, and ends with stop", async () => {
    const schema = {
      type: "object",
      properties: {
        title: { type: "string", maxLength: 16 },
        rating: { enum: [1, 2, 3, 4, 5] },
        author: { type: "object", properties: { name: { type: "string", maxLength: 10 }, born: { type: "integer", minimum: 1800, maximum: 2020 } }, required: ["name", "born"], additionalProperties: false },
        genres: { type: "array", items: { enum: ["fiction", "poetry", "essay"] }, maxItems: 3 },
      },
      required: ["title", "rating", "author", "genres"],
      additionalProperties: false,
    };
    const validate = ajv.compile(schema);
    await h.submit("j1", { response_format: { type: "json_schema", json_schema: { name: "book", schema, strict: true } }, max_tokens: 600, n: 3, seed: 4, temperature: 1.2, top_p: 0.95 });
    await h.runUntilIdle();
    for (const index of [0, 1, 2]) {
      const text = h.text("j1", index);
      expect(validate(JSON.parse(text)), text).toBe(true);
      expect(finishOf("j1", index)).toBe("stop");
    }
  }, 120_000);

  it("json_object gives a JSON object", async () => {
    await h.submit("j2", { response_format: { type: "json_object" }, max_tokens: 300, seed: 5 });
    await h.runUntilIdle();
    const last = h.last("j2")!;
    if (last.type === "done" && last.finishReasons[0] === "stop") expect(typeof JSON.parse(h.text("j2"))).toBe("object");
    else expect(h.text("j2").startsWith("{")).toBe(true);
  }, 120_000);
});

describe("engine: legacy prompts", () => {
  it("several prompts get n choices each, numbered prompt by prompt, with echo", async () => {
    await h.submit("c1", { prompt: ["Hello", "Goodbye, world"], n: 2, max_tokens: 3, echo: true, temperature: 0 }, undefined, completionRequest);
    await h.runUntilIdle();
    const start = h.events.get("c1")![0];
    expect(start).toMatchObject({ type: "start", n: 4, promptTokens: tok.encode("Hello").length + tok.encode("Goodbye, world").length });
    expect(h.text("c1", 0).startsWith("Hello")).toBe(true);
    expect(h.text("c1", 2).startsWith("Goodbye, world")).toBe(true);
    // Greedy siblings of one prompt agree; the echo is not counted as output.
    expect(h.text("c1", 0)).toBe(h.text("c1", 1));
    expect(h.last("c1")).toMatchObject({ type: "done", usage: { completionTokens: 12 } });
  }, 120_000);

  it("token-id prompts are used as given", async () => {
    const ids = tok.encode("The capital of France is");
    await h.submit("c2", { prompt: ids, max_tokens: 4, temperature: 0 }, undefined, completionRequest);
    await h.submit("c3", { prompt: "The capital of France is", max_tokens: 4, temperature: 0 }, undefined, completionRequest);
    await h.runUntilIdle();
    expect(h.events.get("c2")![0]).toMatchObject({ type: "start", promptTokens: ids.length });
    expect(h.tokens("c2")).toEqual(h.tokens("c3"));
  }, 120_000);
});
