/**
 * The whole stack on the device layout: a random bf16 Phi-3 checkpoint (Phi-4's vocabulary, tiny
 * otherwise) converted with `npm run model:convert -- --dtype fp16 --layout device`, served by
 * `npm start` with ORT_EP=webgpu (on a CPU Vulkan device in CI, see .ci/install-vulkan-driver), driven
 * through the official `openai` SDK:
 *
 *   a greedy completion has the float64 reference's tokens (while the reference's top-2 margin is clear of
 *   fp16 noise) and its logprobs within the device layout's tolerance (device-runner.test.ts says why);
 *   8 concurrent streams complete under a KV cache small enough to preempt, each with the text it gets
 *   alone (preempted sequences are recomputed and resume);
 *   a shared system prompt is found in the prefix cache.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { metric, startStack, type Stack } from "../../stack/stack-process.ts";
import { ensureVulkanDevice } from "../vulkan-device.ts";
import { tinyConfig } from "../../gpu-node/model/tiny-model.ts";
import { writeRandomHfCheckpoint } from "../../gpu-node/model/test/random-hf-checkpoint.ts";
import { ReferencePhi3 } from "../../gpu-node/model/reference/phi3-reference.ts";
import { renderChat } from "../../gpu-node/tokenizer/chat-format.ts";
import { phi4Tokenizer } from "../../gpu-node/tokenizer/phi4-tokenizer.ts";

/** A CPU Vulkan device is slow, and slower still when the suite runs files in parallel. */
const DEVICE_TEST_TIMEOUT = 300_000;
const REPO_ROOT = join(import.meta.dirname, "..", "..");
const model = "microsoft/phi-4";
const config = tinyConfig();
/** As in device-runner.test.ts: WebGPU's fp16 MatMul rounds as it accumulates (measured there). */
const LOGPROB_TOLERANCE = 4e-2;
const CLEAR_MARGIN = 2 * LOGPROB_TOLERANCE;

let root: string;
let checkpoint: string;
let stack: Stack;
let client: OpenAI;

beforeAll(async () => {
  await ensureVulkanDevice();
  root = await mkdtemp(join(tmpdir(), "device-e2e-"));
  checkpoint = join(root, "hf");
  const modelDir = join(root, "model");
  await writeRandomHfCheckpoint(checkpoint, { config, seed: 11, dtype: "BF16" });
  await promisify(execFile)(process.execPath, ["--import", "tsx", "gpu-node/model/cli/convert.ts", "--from", checkpoint, "--out", modelDir, "--dtype", "fp16", "--layout", "device"], { cwd: REPO_ROOT });
  // 4 blocks of 32 tokens: 8 concurrent streams of ~40 tokens (two blocks each) need more, so some are preempted.
  stack = await startStack({ gpuNodes: 1, extraEnv: { ORT_EP: "webgpu", MODEL_DIR: modelDir, KV_CACHE_TOKENS: "128", KV_BLOCK_SIZE: "32" } });
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.apiKey, maxRetries: 0, timeout: 120_000 });
}, 300_000);

afterAll(async () => {
  await stack?.stop();
  if (root) await rm(root, { recursive: true, force: true });
}, 60_000);

function logSumExp(v: Float64Array): number {
  let max = -Infinity;
  for (const x of v) max = Math.max(max, x);
  let s = 0;
  for (const x of v) s += Math.exp(x - max);
  return max + Math.log(s);
}

/**
 * The reference's greedy continuation of `messages`, up to the first position where its top-2 margin is
 * within fp16 noise (there the device may pick either, and the texts may part).
 */
async function referenceGreedy(messages: Array<{ role: "user"; content: string }>, maxTokens: number): Promise<{ ids: number[]; text: string; logprobs: number[] }> {
  const tokenizer = phi4Tokenizer();
  const reference = await ReferencePhi3.fromSafetensorsDir(checkpoint, config);
  const cache = reference.newCache();
  let logits = reference.forward(cache, renderChat(tokenizer, messages).ids);
  const ids: number[] = [];
  const logprobs: number[] = [];
  for (let i = 0; i < maxTokens; i++) {
    let best = 0;
    let second = 1;
    for (let t = 1; t < logits.length; t++) {
      if (logits[t] > logits[best]) [second, best] = [best, t];
      else if (t !== best && logits[t] > logits[second]) second = t;
    }
    if (logits[best] - logits[second] <= CLEAR_MARGIN) break;
    ids.push(best);
    logprobs.push(logits[best] - logSumExp(logits));
    logits = reference.forward(cache, [best]);
  }
  return { ids, text: tokenizer.decode(ids), logprobs };
}

describe("device layout through the whole stack (ORT_EP=webgpu)", { timeout: DEVICE_TEST_TIMEOUT }, () => {
  it("answers a greedy completion with the float64 reference's tokens and logprobs", async () => {
    const messages = [{ role: "user" as const, content: "Hello there, device!" }];
    const r = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = r.choices[0].logprobs!.content!;
    expect(content).toHaveLength(8);

    const ref = await referenceGreedy(messages, 8);
    expect(ref.ids.length).toBeGreaterThanOrEqual(4);
    for (let i = 0; i < ref.ids.length; i++) expect(Math.abs(content[i].logprob - ref.logprobs[i]), `token ${i}`).toBeLessThan(LOGPROB_TOLERANCE);
    expect(content.slice(0, ref.ids.length).map((c) => c.token).join("")).toBe(ref.text);
  });

  it("completes 8 concurrent streams under a small KV cache (preemption and recompute), each on the reference's greedy path", async () => {
    const messages = (i: number) => [{ role: "user" as const, content: `Story ${i}: once upon a time` }];
    // ~15 prompt tokens + 24 generated outgrow one block of 32: running sequences need a second block mid-decode.
    const body = (i: number) => ({ model, temperature: 0, max_tokens: 24, messages: messages(i) });
    const preemptedBefore = await metric(stack.nodes[0].metrics, "phi4_preemptions_total");
    const streams = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const s = await client.chat.completions.create({ ...body(i), stream: true });
        let text = "";
        let finish: string | null = null;
        for await (const chunk of s) {
          text += chunk.choices[0]?.delta?.content ?? "";
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        return { text, finish };
      }),
    );
    let clear = 0;
    for (let i = 0; i < 8; i++) {
      expect(streams[i].finish).toBe("length");
      const ref = await referenceGreedy(messages(i), 24);
      expect(streams[i].text.startsWith(ref.text), `stream ${i}: ${JSON.stringify(streams[i].text)} vs reference ${JSON.stringify(ref.text)}`).toBe(true);
      clear += ref.ids.length;
    }
    expect(clear).toBeGreaterThanOrEqual(16); // the comparison covers real ground, not only near ties
    expect(await metric(stack.nodes[0].metrics, "phi4_preemptions_total")).toBeGreaterThan(preemptedBefore);
  });

  it("finds a shared system prompt in the prefix cache", async () => {
    const system = { role: "system" as const, content: "You answer briefly and kindly. ".repeat(8) };
    await client.chat.completions.create({ model, temperature: 0, max_tokens: 2, messages: [system, { role: "user", content: "one" }] });
    await client.chat.completions.create({ model, temperature: 0, max_tokens: 2, messages: [system, { role: "user", content: "two" }] });
    expect(await metric(stack.nodes[0].metrics, "phi4_prefix_cache_hit_rate")).toBeGreaterThan(0);
  });
});
