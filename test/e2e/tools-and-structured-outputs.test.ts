/**
 * Tool calling, structured outputs and the legacy completions endpoint through the official `openai`
 * SDK against the whole stack (npm start, the tiny random model). The model's weights are random, so
 * every valid call and JSON document here is the grammar's doing; ajv checks them against their schemas.
 */
import Ajv from "ajv";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../../stack/stack-process.ts";

let stack: Stack;
let client: OpenAI;
const model = "microsoft/phi-4";
const ajv = new Ajv({ strict: false });

beforeAll(async () => {
  stack = await startStack({ gpuNodes: 1 });
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.apiKey, maxRetries: 0, timeout: 120_000 });
}, 180_000);
afterAll(async () => {
  await stack?.stop();
}, 60_000);

const weatherParams = {
  type: "object",
  properties: {
    city: { type: "string", maxLength: 16 },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
    days: { type: "integer", minimum: 1, maximum: 7 },
  },
  required: ["city", "unit", "days"],
  additionalProperties: false,
};
const timeParams = {
  type: "object",
  properties: { zone: { type: "string", maxLength: 10 }, precise: { type: "boolean" } },
  required: ["zone", "precise"],
  additionalProperties: false,
};
const weatherTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function", function: { name: "get_weather", description: "Forecast for a city", parameters: weatherParams, strict: true },
};
const timeTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function", function: { name: "get_time", description: "Current time in a zone", parameters: timeParams, strict: true },
};
const validators: Record<string, ReturnType<Ajv["compile"]>> = { get_weather: ajv.compile(weatherParams), get_time: ajv.compile(timeParams) };
const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "What's the weather in Oslo, and the time there?" }];

function expectValidCalls(calls: Array<{ id: string; function: { name: string; arguments: string } }>): void {
  expect(calls.length).toBeGreaterThan(0);
  for (const call of calls) {
    expect(call.id).toMatch(/^call_/);
    const validate = validators[call.function.name];
    expect(validate, call.function.name).toBeDefined();
    expect(validate(JSON.parse(call.function.arguments)), `${call.function.arguments}: ${ajv.errorsText(validate.errors)}`).toBe(true);
  }
}

describe("tool calling through the SDK", () => {
  it("tool_choice required: message.tool_calls whose arguments validate, finish_reason tool_calls (two tools)", async () => {
    const r = await client.chat.completions.create({ model, messages, tools: [weatherTool, timeTool], tool_choice: "required", max_tokens: 400, seed: 1 });
    const choice = r.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    expectValidCalls(choice.message.tool_calls as never);
  });

  it("tool_choice required, streamed: delta.tool_calls (index, id and name first, then argument pieces) reassemble to valid calls", async () => {
    const stream = await client.chat.completions.create({ model, messages, tools: [weatherTool, timeTool], tool_choice: "required", max_tokens: 400, seed: 2, stream: true });
    const calls: Array<{ id: string; function: { name: string; arguments: string } }> = [];
    let finish: string | null = null;
    let pieces = 0;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      const choice = chunk.choices[0];
      if (!choice) continue;
      for (const d of choice.delta.tool_calls ?? []) {
        pieces++;
        if (d.id) {
          expect(d.index).toBe(calls.length);
          expect(d.function?.name).toBeTruthy();
          calls.push({ id: d.id, function: { name: d.function!.name!, arguments: d.function?.arguments ?? "" } });
        } else {
          expect(d.function?.name).toBeUndefined();
          calls[d.index].function.arguments += d.function?.arguments ?? "";
        }
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    expect(finish, `after ${chunks} chunks`).toBe("tool_calls");
    expect(pieces).toBeGreaterThan(calls.length);
    expectValidCalls(calls);
  });

  it("a named function is called with valid arguments, and a conversation with its result continues", async () => {
    const r = await client.chat.completions.create({
      model, messages, tools: [weatherTool, timeTool], tool_choice: { type: "function", function: { name: "get_time" } }, max_tokens: 200, seed: 3,
    });
    const calls = r.choices[0].message.tool_calls!;
    expect(calls.map((c) => (c as { function: { name: string } }).function.name)).toEqual(["get_time"]);
    expectValidCalls(calls as never);
    const next = await client.chat.completions.create({
      model, tools: [weatherTool, timeTool], max_tokens: 5, tool_choice: "none",
      messages: [...messages, r.choices[0].message, { role: "tool", tool_call_id: calls[0].id, content: "12:00" }],
    });
    expect(next.choices[0].message.tool_calls ?? []).toEqual([]);
    // The tools and the earlier call are in the prompt the model saw.
    expect(next.usage!.prompt_tokens).toBeGreaterThan(150);
  });
});

describe("structured outputs through the SDK", () => {
  const schema = {
    type: "object",
    properties: {
      title: { type: "string", maxLength: 20 },
      year: { type: "integer", minimum: 1900, maximum: 2030 },
      genre: { type: "string", enum: ["drama", "comedy", "documentary"] },
      director: {
        type: "object",
        properties: { name: { type: "string", maxLength: 16 }, alive: { type: "boolean" } },
        required: ["name", "alive"],
        additionalProperties: false,
      },
      cast: { type: "array", items: { type: "string", maxLength: 12 }, maxItems: 3 },
    },
    required: ["title", "year", "genre", "director", "cast"],
    additionalProperties: false,
  };
  const validate = ajv.compile(schema);
  const responseFormat = { type: "json_schema" as const, json_schema: { name: "film", schema, strict: true } };

  it("json_schema (strict, nested objects, arrays, enums, required): content parses and validates, finish_reason stop", async () => {
    const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Describe a film." }], response_format: responseFormat, max_tokens: 600, n: 2, seed: 4 });
    for (const choice of r.choices) {
      expect(choice.finish_reason).toBe("stop");
      const value = JSON.parse(choice.message.content!);
      expect(validate(value), `${choice.message.content}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    }
  });

  it("json_schema streamed: the concatenated content parses and validates", async () => {
    const stream = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Another film." }], response_format: responseFormat, max_tokens: 600, seed: 5, stream: true });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe("stop");
    expect(validate(JSON.parse(text)), text).toBe(true);
  });
});

describe("legacy completions through the SDK", () => {
  it("client.completions.create answers a text_completion with usage and estimated_cost", async () => {
    const r = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 6, temperature: 0, logprobs: 2 });
    expect(r.object).toBe("text_completion");
    expect(r.id).toMatch(/^cmpl-/);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(6);
    expect((r.usage as unknown as { estimated_cost: number }).estimated_cost).toBeGreaterThan(0);
    const lp = r.choices[0].logprobs!;
    expect(lp.tokens).toHaveLength(6);
    expect(lp.tokens!.join("")).toBe(r.choices[0].text);
    expect(lp.top_logprobs!.every((t) => Object.keys(t).length >= 1 && Object.keys(t).length <= 2)).toBe(true);
    expect(lp.text_offset![0]).toBe(0);
  });

  it("streams the same text as the whole response, with echo and several prompts", async () => {
    const whole = await client.completions.create({ model, prompt: ["The sea", "A cat"], max_tokens: 5, temperature: 0, echo: true });
    expect(whole.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(whole.choices[0].text.startsWith("The sea")).toBe(true);
    expect(whole.choices[1].text.startsWith("A cat")).toBe(true);
    const stream = await client.completions.create({ model, prompt: ["The sea", "A cat"], max_tokens: 5, temperature: 0, echo: true, stream: true });
    const texts = ["", ""];
    const finishes: Array<string | null> = [null, null];
    for await (const chunk of stream) {
      expect(chunk.object).toBe("text_completion");
      for (const c of chunk.choices) {
        texts[c.index] += c.text;
        finishes[c.index] = c.finish_reason ?? finishes[c.index];
      }
    }
    expect(texts).toEqual(whole.choices.map((c) => c.text));
    expect(finishes).toEqual(["length", "length"]);
  });

  it("takes token ids as the prompt", async () => {
    const r = await client.completions.create({ model, prompt: [791, 9581, 374], max_tokens: 3, temperature: 0 });
    expect(r.usage!.prompt_tokens).toBe(3);
    expect(r.usage!.completion_tokens).toBe(3);
  });

  it("refuses suffix and best_of above n with 400", async () => {
    await expect(client.completions.create({ model, prompt: "a", suffix: "b" })).rejects.toMatchObject({ status: 400, param: "suffix" });
    await expect(client.completions.create({ model, prompt: "a", best_of: 3 })).rejects.toMatchObject({ status: 400, param: "best_of" });
  });
});

describe("validation gaps answer 400", () => {
  const bad = async (body: Record<string, unknown>, param: string) => {
    await expect(client.chat.completions.create({ model, ...body } as never)).rejects.toMatchObject({ status: 400, param });
  };

  it("a user or system message without content", async () => {
    await bad({ messages: [{ role: "user" }] }, "messages[0].content");
    await bad({ messages: [{ role: "system" }, { role: "user", content: "hi" }] }, "messages[0].content");
  });

  it("a tool message without tool_call_id", async () => {
    await bad({ messages: [{ role: "user", content: "hi" }, { role: "tool", content: "42" }] }, "messages[1].tool_call_id");
  });

  it("tool_choice naming a function that is not in tools", async () => {
    await bad({ messages, tools: [weatherTool], tool_choice: { type: "function", function: { name: "get_time" } } }, "tool_choice.function.name");
  });

  it("a schema with keywords constrained decoding cannot enforce, naming them", async () => {
    const err = await client.chat.completions.create({
      model, messages, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", not: { required: ["a"] }, if: {} } } },
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, param: "response_format.json_schema.schema" });
    expect((err as Error).message).toMatch(/'not', 'if'/);
  });
});
