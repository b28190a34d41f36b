/**
 * The step loop on the device layout (ORT_EP=webgpu: DeviceRunner, the KV cache on a WebGPU device,
 * candidates ranked there): the engine behaviours the CPU layout's tests check (llm-engine.test.ts),
 * at sizes a CPU Vulkan device runs in seconds. Continuous batching with chunked prefill keeps a seeded
 * request's tokens, a resume continues a request exactly, n choices and stop strings work, a shared
 * system prompt is served from the prefix cache without its blocks being rewritten, and preemption under
 * a small cache still gives every request its seeded tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EngineHarness } from "./engine-harness.ts";
import { tinyConfig } from "../../model/tiny-model.ts";
import { RandomWeights } from "../../model/random-weights.ts";
import { writeModel } from "../../model/write-model.ts";
import { DeviceRunner } from "../../runner/device-runner.ts";
import { ensureVulkanDevice } from "../../../test/vulkan-device.ts";

/** A CPU Vulkan device is slow, and slower still when the suite runs files in parallel. */
const DEVICE_TEST_TIMEOUT = 300_000;
let root: string;
let modelDir: string;
let h: EngineHarness;

beforeAll(async () => {
  await ensureVulkanDevice();
  root = await mkdtemp(path.join(os.tmpdir(), "device-engine-"));
  modelDir = path.join(root, "model");
  const config = tinyConfig();
  await writeModel(config, new RandomWeights(config, 7), { outDir: modelDir, dtype: "fp16", layout: "device" });
  // A small token budget per step, so prompts are prefilled in chunks alongside other rows' decodes.
  h = await EngineHarness.create(modelDir, { ep: "webgpu", maxBatchTokens: 48, kvTokens: 4096, blockSize: 32 });
}, 300_000);

afterAll(async () => {
  await h?.release();
  if (root) await rm(root, { recursive: true, force: true });
});

async function solo(harness: EngineHarness, id: string, body: Record<string, unknown>): Promise<number[][]> {
  harness.submit(id, body);
  await harness.runUntilIdle();
  return harness.tokens(id);
}

describe("engine on the device layout (WebGPU)", { timeout: DEVICE_TEST_TIMEOUT }, () => {
  it("runs on the DeviceRunner and streams a done with usage", async () => {
    expect(h.runner).toBeInstanceOf(DeviceRunner);
    const toks = await solo(h, "r1", { temperature: 0, max_tokens: 8 });
    expect(toks[0]).toHaveLength(8);
    expect(h.last("r1")).toMatchObject({ type: "done", finishReasons: ["length"] });
    // Greedy rows ask for candidates only: a step brings back 64 values and ids and a log-sum-exp per row.
    expect(h.runner.lastStepStats.outputBytes).toBe(64 * 8 + 4);
  });

  // fp16 arithmetic on the device rounds differently with the batch's shape (as on any GPU), so a sampled draw
  // near a CDF boundary may differ between alone and batched; greedy choices (clear margins here) may not.
  it("gives a greedy request the same tokens alone and among 7 others (continuous batching, chunked prefill)", async () => {
    const body = { temperature: 0, max_tokens: 12 };
    const alone = await solo(h, "det-alone", body);
    h.submit("det-busy", body);
    const others = Array.from({ length: 7 }, (_, i) => ({
      id: `noise-${i}`,
      at: i % 4,
      body: { temperature: 0.8, max_tokens: 4 + i, messages: [{ role: "user", content: `Noise ${i} `.repeat(3 + 4 * i) }] },
    }));
    for (let step = 0; h.engine.hasWork || others.some((o) => o.at >= step); step++) {
      for (const o of others) if (o.at === step) h.submit(o.id, o.body);
      await h.engine.step();
    }
    expect(h.tokens("det-busy")).toEqual(alone);
    for (const o of others) expect(h.last(o.id)?.type).toBe("done");
  });

  it("draws plain sampling with bias and penalties from device candidates: same seeded text alone and among others, few bytes", async () => {
    const device = h.runner as DeviceRunner;
    // The tiny model's random weights give near-uniform rows (no clear head: the host sampler would draw):
    // the bias makes a head that carries nearly all the mass, as a trained model's rows often do. (A draw
    // in a flat tail of 100k tokens of ~1e-6 each moves with any fp16 rounding of the batch's shape.)
    const body = {
      seed: 31, max_tokens: 16, presence_penalty: 0.6, frequency_penalty: 0.4, logprobs: true, top_logprobs: 2,
      logit_bias: { 100: 20, 101: 19, 102: 19, 103: 18, 200: -100 },
    };
    let candidateSteps = 0;
    let steps = 0;
    h.submit("plain-alone", body);
    while (h.engine.hasWork) {
      await h.engine.step();
      steps++;
      // a decode step of the one row: the ranked head of the adjusted row and two log-sum-exps, unless its draw went to the tail
      if (device.lastStepStats.bytesFromDevice <= 2 * (64 * 8 + 4) + 8) candidateSteps++;
    }
    const alone = h.tokens("plain-alone");
    expect(alone[0]).toHaveLength(16);
    expect(alone[0]).not.toContain(200);
    // the bias reached the device's ranking: the lifted tokens are drawn (raw rows would almost never give them)
    expect(alone[0].filter((t) => t >= 100 && t <= 103).length).toBeGreaterThan(8);
    expect(candidateSteps).toBeGreaterThan(steps / 2);
    h.submit("plain-busy", body);
    const others = Array.from({ length: 5 }, (_, i) => ({
      id: `plain-noise-${i}`,
      at: i % 3,
      body: { seed: i, temperature: 0.8 + i / 10, repetition_penalty: 1.2, max_tokens: 4 + i, messages: [{ role: "user", content: `Other ${i} `.repeat(2 + 3 * i) }] },
    }));
    for (let step = 0; h.engine.hasWork || others.some((o) => o.at >= step); step++) {
      for (const o of others) if (o.at === step) h.submit(o.id, o.body);
      await h.engine.step();
    }
    expect(h.tokens("plain-busy")).toEqual(alone);
    for (const o of others) expect(h.last(o.id)?.type).toBe("done");
  });

  it("resumes a request from already published tokens exactly as the uninterrupted run", async () => {
    const body = { seed: 99, temperature: 0.9, max_tokens: 10 };
    const full = await solo(h, "res-full", body);
    const k = 4;
    h.submit("res-2", body, { tokens: [full[0].slice(0, k)], finishReasons: [null] });
    await h.runUntilIdle();
    expect([...full[0].slice(0, k), ...h.tokens("res-2")[0]]).toEqual(full[0]);
  });

  it("serves n seeded choices that differ and repeat with the seed; logprobs come from the device's ranking", async () => {
    const body = { n: 2, seed: 5, temperature: 1, max_tokens: 6, logprobs: true, top_logprobs: 3 };
    const toks = await solo(h, "n2", body);
    expect(toks).toHaveLength(2);
    expect(toks[0]).not.toEqual(toks[1]);
    expect(await solo(h, "n2b", body)).toEqual(toks);
    const delta = h.events.get("n2")!.find((e) => e.type === "delta") as { logprobs?: Array<{ logprob: number; top_logprobs: Array<{ logprob: number }> }> };
    const lp = delta.logprobs![0];
    expect(lp.logprob).toBeLessThanOrEqual(0);
    expect(lp.top_logprobs).toHaveLength(3);
    expect(lp.top_logprobs[0].logprob).toBeGreaterThanOrEqual(lp.top_logprobs[2].logprob);
  });

  it("stops at a stop string and never emits it", async () => {
    const free = await solo(h, "stop-free", { temperature: 0, max_tokens: 16 });
    const text = h.text("stop-free");
    expect(free[0].length).toBe(16);
    const stop = text.slice(6, 9);
    await solo(h, "stop", { temperature: 0, max_tokens: 16, stop: [stop] });
    expect(h.text("stop")).toBe(text.slice(0, text.indexOf(stop)));
    expect(h.last("stop")).toMatchObject({ type: "done", finishReasons: ["stop"] });
  });

  it("serves a shared system prompt from the prefix cache without rewriting its blocks", async () => {
    const device = h.runner as DeviceRunner;
    const all = Array.from({ length: device.numBlocks }, (_, i) => i);
    const system = { role: "system", content: "You are a careful assistant. ".repeat(12) };
    await solo(h, "p1", { temperature: 0, max_tokens: 2, messages: [system, { role: "user", content: "one" }] });
    const before = await Promise.all([0, 1].map((l) => device.readBlocks(l, all)));
    const hits = h.engine.stats().prefixCacheHitTokens;
    await solo(h, "p2", { temperature: 0, max_tokens: 2, messages: [system, { role: "user", content: "two" }] });
    const hit = h.engine.stats().prefixCacheHitTokens - hits;
    expect(hit).toBeGreaterThanOrEqual(64);
    const after = await Promise.all([0, 1].map((l) => device.readBlocks(l, all)));
    // Only blocks for p2's own tokens (prompt past the hit, plus its 2 outputs) may have changed, in every layer.
    const usage = (h.last("p2") as { usage: { promptTokens: number } }).usage;
    const own = Math.ceil((usage.promptTokens + 2 - hit) / device.blockSize) + 1;
    const blockHalves = device.blockSize * tinyConfig().numKvHeads * tinyConfig().headDim;
    for (let l = 0; l < 2; l++) {
      let changed = 0;
      for (const b of all) {
        const range = [b * blockHalves, (b + 1) * blockHalves] as const;
        const same = (x: Uint16Array, y: Uint16Array) => Buffer.from(x.subarray(...range).slice().buffer).equals(Buffer.from(y.subarray(...range).slice().buffer));
        if (!same(before[l].key, after[l].key) || !same(before[l].value, after[l].value)) changed++;
      }
      expect(changed, `layer ${l}`).toBeGreaterThan(0);
      expect(changed, `layer ${l}`).toBeLessThanOrEqual(own);
    }
  });
});

describe("engine on the device layout: preemption under a small KV cache", { timeout: DEVICE_TEST_TIMEOUT }, () => {
  it("preempts instead of failing, and every request still gets its seeded tokens", async () => {
    const small = await EngineHarness.create(modelDir, { ep: "webgpu", kvTokens: 128, blockSize: 32 });
    try {
      const bodies = Array.from({ length: 3 }, (_, i) => ({ seed: 100 + i, temperature: 1, max_tokens: 24, messages: [{ role: "user", content: `Request ${i}: ` + "go ".repeat(6) }] }));
      const expected: number[][][] = [];
      for (let i = 0; i < bodies.length; i++) expected.push(await solo(small, `solo-${i}`, bodies[i]));
      for (let i = 0; i < bodies.length; i++) small.submit(`all-${i}`, bodies[i]);
      await small.runUntilIdle();
      const stats = small.engine.stats();
      expect(stats.preemptions).toBeGreaterThan(0);
      for (let i = 0; i < bodies.length; i++) expect(small.tokens(`all-${i}`)).toEqual(expected[i]);
      expect(stats.kvBlocksUsed).toBe(0);
    } finally {
      await small.release();
    }
  });
});
