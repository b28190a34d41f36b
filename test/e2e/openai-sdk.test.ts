/**
 * The whole stack (npm start: Redis, GPU node(s) with the tiny model, wrangler dev) driven through the
 * official `openai` SDK, exactly as users call it.
 */
import { readdirSync, readFileSync } from "node:fs";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../../stack/stack-process.ts";
import { abortFreesNodeBlocks, resumeHasNoGapOrDuplicate } from "./stream-scenarios.ts";

let stack: Stack;
let client: OpenAI;
const model = "microsoft/phi-4";
const user = (content: string) => [{ role: "user" as const, content }];

beforeAll(async () => {
  // A short resume grace (production: 10 s), so a disconnected stream is cancelled long before it could finish.
  // A disconnect that workerd reports only as a failed write is heard after STALLED_WRITE_MS, then the 1 s
  // grace; with the default 5 s that is ~7 s after the abort, longer than a fast machine takes for the
  // abort test's whole 5000 tokens (~6.5 s), which then ends "completed", never "cancelled". 2 s keeps the
  // cancel well ahead of the generation's end, and still far from a live client's slowest write.
  stack = await startStack({ gpuNodes: 1, extraEnv: { RESUME_GRACE_MS: "1000", STALLED_WRITE_MS: "2000" } });
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.apiKey, maxRetries: 0, timeout: 60_000 });
}, 180_000);
afterAll(async () => {
  await stack?.stop();
}, 60_000);

async function streamText(body: Record<string, unknown>, signal?: AbortSignal) {
  const stream = await client.chat.completions.create({ model, messages: user("Tell me a story."), ...body, stream: true } as never, { signal }) as unknown as AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>;
  let text = "";
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  return { text, chunks };
}

describe("npm start's processes", () => {
  it("carry the development key and the Redis URL on no command line (every local user can list those)", () => {
    const commandLines: string[] = [];
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      try {
        commandLines.push(readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " "));
      } catch {
        // gone, or not ours to read
      }
    }
    expect(commandLines.filter((c) => c.includes(stack.apiKey))).toEqual([]);
    // This stack's wrangler (other stacks may run on the machine) is the one on its port.
    const ours = commandLines.filter((c) => c.includes(`--port ${new URL(stack.origin).port}`));
    expect(ours.some((c) => c.includes("wrangler") && c.includes(" dev "))).toBe(true);
    expect(ours.filter((c) => c.includes("REDIS_URL"))).toEqual([]);
  });
});

describe("OpenAI SDK against the whole stack", () => {
  it("answers a non-streaming completion with usage and estimated_cost", async () => {
    const r = await client.chat.completions.create({ model, messages: user("Hello!"), max_tokens: 8, temperature: 0 });
    expect(r.object).toBe("chat.completion");
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.model).toBe(model);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].message.role).toBe("assistant");
    expect(typeof r.choices[0].message.content).toBe("string");
    expect(r.choices[0].finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(8);
    expect(r.usage!.prompt_tokens).toBeGreaterThan(5);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + 8);
    const cost = (r.usage as unknown as { estimated_cost: number }).estimated_cost;
    expect(cost).toBeCloseTo((r.usage!.prompt_tokens * 0.07 + 8 * 0.14) / 1e6, 12);
  });

  it("streams chunks through the SDK's iterator: role first, finish_reason last, usage when asked", async () => {
    const { text, chunks } = await streamText({ max_tokens: 10, temperature: 0, stream_options: { include_usage: true } });
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    const withFinish = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(withFinish).toHaveLength(1);
    expect(withFinish[0].choices[0].finish_reason).toBe("length");
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toHaveLength(0);
    expect(usageChunk.usage!.completion_tokens).toBe(10);
    // The same request without streaming gives the same text (greedy).
    const whole = await client.chat.completions.create({ model, messages: user("Tell me a story."), max_tokens: 10, temperature: 0 });
    expect(text).toBe(whole.choices[0].message.content);
  });

  it("serves the provider path /v1/openai too", async () => {
    const other = new OpenAI({ baseURL: `${stack.origin}/v1/openai`, apiKey: stack.apiKey, maxRetries: 0 });
    const r = await other.chat.completions.create({ model, messages: user("Hi"), max_tokens: 3 });
    expect(r.choices[0].finish_reason).toBe("length");
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain(model);
  });

  it("raises the SDK's error classes with the right status and param", async () => {
    await expect(client.chat.completions.create({ model, messages: user("x"), temperature: 3 })).rejects.toMatchObject({ status: 400, param: "temperature" });
    await expect(client.chat.completions.create({ model, messages: user("x"), temperature: 3 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const badKey = new OpenAI({ baseURL: stack.baseURL, apiKey: "sk-wrong", maxRetries: 0 });
    await expect(badKey.chat.completions.create({ model, messages: user("x") })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(client.chat.completions.create({ model: "gpt-4o", messages: user("x") })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.chat.completions.create({ model, messages: user("x"), max_tokens: 16_384 })).rejects.toMatchObject({ status: 400, code: "context_length_exceeded" });
  });

  it("stops at a stop sequence and reports length at max_tokens", async () => {
    const free = await client.chat.completions.create({ model, messages: user("Count."), max_tokens: 30, temperature: 0 });
    const text = free.choices[0].message.content!;
    const stop = text.slice(8, 12);
    expect(stop.length).toBe(4);
    const stopped = await client.chat.completions.create({ model, messages: user("Count."), max_tokens: 30, temperature: 0, stop: [stop] });
    expect(stopped.choices[0].message.content).toBe(text.slice(0, text.indexOf(stop)));
    expect(stopped.choices[0].finish_reason).toBe("stop");
  });

  it("returns n choices and logprobs", async () => {
    const r = await client.chat.completions.create({ model, messages: user("Pick."), n: 3, max_tokens: 6, seed: 11, logprobs: true, top_logprobs: 2 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (const c of r.choices) {
      expect(c.logprobs!.content!.length).toBe(6);
      for (const t of c.logprobs!.content!) {
        expect(t.logprob).toBeLessThanOrEqual(0);
        expect(t.top_logprobs).toHaveLength(2);
      }
    }
    expect(r.usage!.completion_tokens).toBe(18);
  });

  it("gives a seeded request the same text while 16 other streams run", async () => {
    const body = { messages: user("Seeded story"), seed: 424242, temperature: 1, max_tokens: 24 };
    const alone = await client.chat.completions.create({ model, ...body });
    const noise = Array.from({ length: 16 }, (_, i) => streamText({ messages: user(`noise ${i} `.repeat(i + 1)), max_tokens: 20 + i }));
    const busy = await client.chat.completions.create({ model, ...body });
    await Promise.all(noise);
    expect(busy.choices[0].message.content).toBe(alone.choices[0].message.content);
  });

  it("completes 32 concurrent streams", async () => {
    // End-of-sequence banned: unseeded draws from the random tiny model may otherwise stop a stream early, and
    // this test is about every stream running to its length.
    const noEos = { "100265": -100, "100257": -100 };
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => streamText({ messages: user(`stream ${i}`), max_tokens: 16, logit_bias: noEos, stream_options: { include_usage: true } })));
    for (const r of results) {
      expect(r.chunks.findLast((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason).toBe("length");
      expect(r.chunks.at(-1)!.usage!.completion_tokens).toBe(16);
    }
  });

  it("frees the node's KV blocks when the client aborts a stream", () => abortFreesNodeBlocks(client, stack, 15_000));

  it("resumes a stream from Last-Event-ID without gap or duplicate", () => resumeHasNoGapOrDuplicate(stack));
});
