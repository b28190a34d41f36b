/**
 * Logit bias and penalties applied on the device (device-ranker-graph.ts, fed by sparseAdjustments) rank
 * as the host's adjustment of the whole row does (logit-adjustments.ts): same top 64 ids, values and
 * log-sum-exps (plain and at the row's temperature) within float32 rounding, on Phi-4's vocabulary with
 * biases that lift a low token into the head and ban the best one, repetition penalty on positive and
 * negative logits, frequency and presence penalties on repeated tokens. Through DeviceRunner.run: the
 * adjusted ranking and log-sum-exps of a row that carries adjustments and a temperature, the bytes the
 * second ranking adds, and fetchRows handing back the row as computed.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VOCAB_SIZE } from "../../../shared/limits.ts";
import { seededUniform } from "../../../shared/seeded-uniform.ts";
import { ensureVulkanDevice } from "../../../test/vulkan-device.ts";
import { applyBiasAndPenalties, sparseAdjustments } from "../../engine/logit-adjustments.ts";
import { DEFAULT_SAMPLING, type SamplingParams } from "../../engine/sampling-params.ts";
import { TokenCounts } from "../../engine/token-counts.ts";
import { DEVICE_TOP_K, deviceIo } from "../../model/graph/device-decoder-graph.ts";
import { RandomWeights } from "../../model/random-weights.ts";
import { tinyConfig } from "../../model/tiny-model.ts";
import { writeModel } from "../../model/write-model.ts";
import { buildDeviceRankerGraph, rankerIo } from "../device-ranker-graph.ts";
import { DeviceRunner } from "../device-runner.ts";
import { LogitsNeed } from "../step-runner.ts";

const V = VOCAB_SIZE;
const K = DEVICE_TOP_K;
let session: ort.InferenceSession;

beforeAll(async () => {
  await ensureVulkanDevice();
  session = await ort.InferenceSession.create(buildDeviceRankerGraph(V, K), { executionProviders: ["webgpu"], logSeverityLevel: 3 });
}, 300_000);

let root: string | undefined;
afterAll(async () => {
  await session?.release();
  if (root) await rm(root, { recursive: true, force: true });
});

function hostTop(row: Float32Array, k: number): number[] {
  const ids = Array.from({ length: row.length }, (_, i) => i);
  ids.sort((a, b) => row[b] - row[a] || a - b);
  return ids.slice(0, k);
}

function logSumExp(row: ArrayLike<number>, invT = 1): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i] * invT);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] * invT - max);
  return max + Math.log(sum);
}

describe("bias and penalties on the device", { timeout: 300_000 }, () => {
  it("rank as the host's adjustment of the whole row", async () => {
    const random = seededUniform(11);
    const R = 3;
    const logits = new Float32Array(R * V);
    for (let i = 0; i < logits.length; i++) logits[i] = (random() - 0.6) * 16;
    const rowOf = (r: number) => logits.subarray(r * V, (r + 1) * V);
    const best = hostTop(rowOf(0), 3);
    const params: SamplingParams[] = [
      // bias: lift a low token to the top, ban the best, nudge the third; repetition on the prompt and output
      { ...DEFAULT_SAMPLING, temperature: 0.7, repetitionPenalty: 1.3, logitBias: { 17: 30, [best[0]]: -100, [best[2]]: 0.5 } },
      // frequency and presence on generated tokens (some repeated), plus bias on a token also generated
      { ...DEFAULT_SAMPLING, temperature: 1.5, frequencyPenalty: 0.8, presencePenalty: 0.4, logitBias: { 5: 2 } },
      // nothing: the row ranks as it is
      { ...DEFAULT_SAMPLING, temperature: 0 },
    ];
    const counts = params.map(() => {
      const c = new TokenCounts(Array.from({ length: 40 }, () => Math.floor(random() * V)).concat(hostTop(rowOf(0), 8)));
      for (const t of [5, 5, 9, 1000, 5, 77, 9, ...hostTop(rowOf(1), 4)]) c.add(t);
      return c;
    });
    const slots = new Int32Array(V).fill(-1);
    const adjustments = params.map((p, r) => sparseAdjustments(p, counts[r], V, slots));
    expect(adjustments[2]).toBeNull();
    expect(slots.every((s) => s === -1)).toBe(true);
    const entries = adjustments.flatMap((a, r) => (a ? Array.from({ length: a.count }, (_, i) => ({ r, a, i })) : []));
    // each (row, token) once
    expect(new Set(entries.map((e) => e.r * V + e.a.ids[e.i])).size).toBe(entries.length);
    const n = entries.length;
    const out = await session.run({
      [rankerIo.logits]: new ort.Tensor("float32", logits, [R, V]),
      [rankerIo.adjustIndex]: new ort.Tensor("int64", BigInt64Array.from(entries, (e) => BigInt(e.r * V + e.a.ids[e.i])), [n]),
      [rankerIo.adjustBias]: new ort.Tensor("float32", Float32Array.from(entries, (e) => e.a.bias[e.i]), [n]),
      [rankerIo.adjustPenalty]: new ort.Tensor("float32", Float32Array.from(entries, (e) => e.a.penalty[e.i]), [n]),
      [rankerIo.adjustAddend]: new ort.Tensor("float32", Float32Array.from(entries, (e) => e.a.addend[e.i]), [n]),
      [rankerIo.invTemperature]: new ort.Tensor("float32", Float32Array.from(params, (p) => (p.temperature > 0 ? 1 / p.temperature : 1)), [R]),
    });
    const values = out[deviceIo.topValues].data as Float32Array;
    const ids = out[deviceIo.topIds].data as Int32Array;
    const lse = out[deviceIo.logSumExp].data as Float32Array;
    const scaled = out[rankerIo.scaledLogSumExp].data as Float32Array;
    for (let r = 0; r < R; r++) {
      const host = rowOf(r).slice();
      applyBiasAndPenalties(host, 0, V, params[r], counts[r]);
      const top = hostTop(host, K);
      expect(Array.from(ids.subarray(r * K, (r + 1) * K)), `row ${r}`).toEqual(top);
      for (let i = 0; i < K; i++) expect(Math.abs(values[r * K + i] - host[top[i]])).toBeLessThan(1e-5);
      expect(Math.abs(lse[r] - logSumExp(host))).toBeLessThan(1e-4);
      const invT = params[r].temperature > 0 ? 1 / params[r].temperature : 1;
      expect(Math.abs(scaled[r] - logSumExp(host, invT))).toBeLessThan(1e-4);
    }
    // the adjustments did something: the lifted token leads row 0, the banned one is gone
    expect(ids[0]).toBe(17);
    expect(Array.from(ids.subarray(0, K))).not.toContain(best[0]);
  });

  it("DeviceRunner.run ranks a row after its adjustments, with its log-sum-exp at its temperature; fetchRows gives the raw row", async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "device-ranker-"));
    const config = tinyConfig();
    await writeModel(config, new RandomWeights(config, 3), { outDir: root, dtype: "fp16", layout: "device" });
    const runner = await DeviceRunner.load({ modelDir: root, numBlocks: 4, blockSize: 32 });
    try {
      const adjust = { count: 2, ids: Int32Array.of(17, 42), bias: Float32Array.of(50, 0), penalty: Float32Array.of(1, 2), addend: Float32Array.of(0, -1) };
      const out = await runner.run([
        { tokens: [1, 2, 3], pastLen: 0, blockTable: [0], needs: LogitsNeed.Candidates, adjust, temperature: 0.5 },
        { tokens: [4], pastLen: 0, blockTable: [1], needs: LogitsNeed.Candidates },
      ]);
      const c = out.candidates!;
      expect(c.ids[0]).toBe(17);
      const stats = runner.lastStepStats;
      expect(stats.runs).toBe(2);
      expect(stats.bytesFromDevice).toBe(2 * (K * 8 + 4) + 2 * (K * 8 + 8)); // the forward's head, then the ranker's
      const raw = await out.fetchRows!([0, 1]);
      const host = raw.slice(0, V);
      expect(host[17]).toBeLessThan(c.values[0] - 40); // the row as computed: the bias is the ranker's alone
      const y = host[42];
      host[17] += 50;
      host[42] = (y > 0 ? y / 2 : y * 2) - 1;
      expect(Math.abs(c.logSumExp![0] - logSumExp(host))).toBeLessThan(1e-3);
      expect(Math.abs(c.scaledLogSumExp![0] - logSumExp(host, 2))).toBeLessThan(1e-3);
      // the unadjusted row ranks as it is
      const second = raw.subarray(V, 2 * V);
      expect(c.ids[K]).toBe(hostTop(second, 1)[0]);
      expect(Math.abs(c.logSumExp![1] - logSumExp(second))).toBeLessThan(1e-3);
    } finally {
      await runner.release();
    }
  });
});
