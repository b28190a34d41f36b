/**
 * The whole stack (npm start: a GPU node with the tiny model and `wrangler dev`) on a Redis Cluster:
 * three redis-server masters on loopback, created here, named to the stack by a `redis-cluster://`
 * REDIS_URL. The Worker (in workerd) and the node each open an ioredis Cluster; the official openai SDK
 * drives a plain, a streamed and an n=2 completion, an abort, and a Last-Event-ID resume.
 */
import { Cluster } from "ioredis";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../../stack/stack-process.ts";
import { abortFreesNodeBlocks, resumeHasNoGapOrDuplicate } from "./stream-scenarios.ts";
import { startRedisCluster, type RedisClusterProcesses } from "../../stack/redis-server-process.ts";

let cluster: RedisClusterProcesses;
let stack: Stack;
let client: OpenAI;
const model = "microsoft/phi-4";
const user = (content: string) => [{ role: "user" as const, content }];

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  // A short resume grace (production: 10 s), so an aborted stream is cancelled soon after.
  // A disconnect that workerd reports only as a failed write is heard after STALLED_WRITE_MS, then the 1 s
  // grace; with the default 5 s that is ~7 s after the abort, longer than a fast machine takes for the
  // abort test's whole 5000 tokens (~6.5 s), which then ends "completed", never "cancelled". 2 s keeps the
  // cancel well ahead of the generation's end, and still far from a live client's slowest write.
  stack = await startStack({ gpuNodes: 1, extraEnv: { REDIS_URL: cluster.url, RESUME_GRACE_MS: "1000", STALLED_WRITE_MS: "2000" } });
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.apiKey, maxRetries: 0, timeout: 60_000 });
}, 240_000);
afterAll(async () => {
  await stack?.stop();
  await cluster?.stop();
}, 60_000);

describe("the whole stack on a three-master Redis Cluster", () => {
  it("answers a non-streamed completion", async () => {
    const r = await client.chat.completions.create({ model, messages: user("Hello!"), max_tokens: 8, temperature: 0 });
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(8);
  });

  it("streams the same text as the non-streamed request, with usage last", async () => {
    const stream = await client.chat.completions.create({ model, messages: user("Tell me a story."), max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(10);
    const whole = await client.chat.completions.create({ model, messages: user("Tell me a story."), max_tokens: 10, temperature: 0 });
    expect(text).toBe(whole.choices[0].message.content);
  });

  it("returns n=2 choices", async () => {
    const r = await client.chat.completions.create({ model, messages: user("Pick."), n: 2, max_tokens: 6, seed: 7 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(r.usage!.completion_tokens).toBe(12);
  });

  it("frees the node's KV blocks when the client aborts a stream", () => abortFreesNodeBlocks(client, stack, 20_000));

  it("resumes a stream from Last-Event-ID without gap or duplicate", () => resumeHasNoGapOrDuplicate(stack));

  it("kept its state in the cluster, spread over more than one master", async () => {
    const redis = new Cluster(cluster.nodes);
    try {
      await new Promise((resolve) => redis.once("ready", resolve));
      const perMaster = await Promise.all(redis.nodes("master").map(async (node) => (await node.keys(`*${stack.prefix}*`)).length));
      expect(perMaster).toHaveLength(3);
      expect(perMaster.filter((n) => n > 0).length).toBeGreaterThan(1);
    } finally {
      redis.disconnect();
    }
  });
});
