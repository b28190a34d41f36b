/**
 * `npm run bench:device-sampling`
 *
 * Bytes the device layout moves per engine step for a default request mix: 8 concurrent chat requests,
 * 5 plain (temperature 1, no top_k: the API's defaults), 2 with presence/frequency penalties, 1 with
 * repetition_penalty and logit_bias, 24 tokens each, on the tiny device model (Phi-4's vocabulary) through
 * the whole engine. Before bias/penalties went to the device and plain sampling drew from candidates,
 * each of those rows brought its whole 401 KB logits row back every step; run this on both versions.
 * Two models: the random weights as they are, whose logits rows are nearly uniform (the 64 best tokens
 * carry ~0.1 % of the mass, so a plain draw lands in the tail almost every step: the worst case), and
 * the same with lm_head scaled ×40 (logits' spread ≈ 6), whose rows are peaked as a trained model's are.
 * Prints one JSON line per model: steps, sampled rows, bytes from/to the device per step and per sampled row.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EngineHarness } from "../gpu-node/engine/test/engine-harness.ts";
import { RandomWeights } from "../gpu-node/model/random-weights.ts";
import { tinyConfig } from "../gpu-node/model/tiny-model.ts";
import { writeModel } from "../gpu-node/model/write-model.ts";
import type { DeviceRunner } from "../gpu-node/runner/device-runner.ts";
import type { WeightSource } from "../gpu-node/model/weights.ts";

/** The random weights with lm_head scaled: logits spread as a trained model's, so rows are peaked. */
function scaledHead(source: WeightSource, scale: number): WeightSource {
  return {
    async get(name) {
      const t = await source.get(name);
      if (name === "lm_head.weight") for (let i = 0; i < t.data.length; i++) t.data[i] *= scale;
      return t;
    },
    close: () => source.close(),
  };
}

const root = await mkdtemp(path.join(os.tmpdir(), "bench-device-sampling-"));
try {
  for (const scale of [1, 40]) await measure(scale);
} finally {
  await rm(root, { recursive: true, force: true });
}

async function measure(scale: number): Promise<void> {
  const config = tinyConfig();
  const modelDir = path.join(root, `model-${scale}`);
  await writeModel(config, scaledHead(new RandomWeights(config, 7), scale), { outDir: modelDir, dtype: "fp16", layout: "device" });
  const h = await EngineHarness.create(modelDir, { ep: "webgpu", kvTokens: 4096, blockSize: 32 });
  const device = h.runner as DeviceRunner;
  const message = (i: number) => [{ role: "user", content: `Request ${i}: tell me something. `.repeat(1 + (i % 3)) }];
  const bodies: Array<Record<string, unknown>> = [
    ...Array.from({ length: 5 }, (_, i) => ({ seed: i, max_tokens: 24, messages: message(i) })),
    { seed: 5, max_tokens: 24, presence_penalty: 0.5, frequency_penalty: 0.3, messages: message(5) },
    { seed: 6, max_tokens: 24, presence_penalty: 1, messages: message(6) },
    { seed: 7, max_tokens: 24, repetition_penalty: 1.2, logit_bias: { 100: 2, 200: -100 }, messages: message(7) },
  ];
  for (let i = 0; i < bodies.length; i++) await h.submit(`r${i}`, bodies[i]);
  let steps = 0;
  let fromDevice = 0;
  let toDevice = 0;
  const started = performance.now();
  while (h.engine.hasWork) {
    await h.engine.step();
    steps++;
    fromDevice += device.lastStepStats.bytesFromDevice;
    toDevice += device.lastStepStats.bytesToDevice;
  }
  const ms = performance.now() - started;
  const rows = bodies.reduce((n, _, i) => n + (h.tokens(`r${i}`)[0]?.length ?? 0), 0);
  console.log(JSON.stringify({
    lmHeadScale: scale, requests: bodies.length, steps, sampledRows: rows,
    bytesFromDevicePerStep: Math.round(fromDevice / steps), bytesFromDevicePerSampledRow: Math.round(fromDevice / rows),
    bytesToDevicePerStep: Math.round(toDevice / steps), totalFromDevice: fromDevice, wallMs: Math.round(ms),
  }));
  await h.release();
}
