/**
 * `bench:device --tiny` end to end on whatever Vulkan device this machine has (Mesa's CPU driver in CI):
 * it builds the device-layout models, runs decode and prefill through the device runner and writes its
 * JSON. The figures themselves mean nothing on a CPU; what is checked is what the GPU run relies on:
 * every measurement present and positive, only the ranked rows coming back per step, the HBM floors
 * (recomputed here by hand from the tiny shape) and the 40-layer extrapolation consistent with the raw runs.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureVulkanDevice } from "./vulkan-device.ts";
import { PHI4_CONFIG } from "../gpu-node/model/phi3-config.ts";
import { deviceKvBytesPerToken, deviceWeightBytes } from "../gpu-node/model/graph/device-decoder-graph.ts";
import { kvBytesPerToken, weightBytesRead } from "../bench/device/hbm-floor.ts";

const run = promisify(execFile);
const tsx = "node_modules/.bin/tsx";

// The tiny shape: hidden 64, 4/2 heads of 16, intermediate 128, vocab 4096; extended to 40 layers.
const L = 40;
const D = 64;
const V = 4096;
const KV_PER_TOKEN = L * 2 * 2 * 16 * 2; // layers × (K, V) × kv heads × head dim × fp16
const H100 = 3.35e12;
const H200 = 4.8e12;
const FP16_PEAK = 989.4e12;

/** Weight bytes per layer and for lm_head, written out from the shapes (qkv 128×64, o 64×64, gate_up 256×64, down 64×128; float32 norms). */
const WEIGHTS = {
  fp16: { layer: (128 * 64 + 64 * 64 + 256 * 64 + 64 * 128) * 2 + 2 * D * 4, lmHead: V * D * 2 },
  // MatMulNBits: per output row, one 18-byte block (16 bytes of codes + fp16 scale) per 32 inputs.
  int4: { layer: (128 * 2 + 64 * 2 + 256 * 2 + 64 * 4) * 18 + 2 * D * 4, lmHead: V * 2 * 18 },
} as const;
type Dtype = keyof typeof WEIGHTS;

const decodeBytes = (dtype: Dtype, layers: number, batch: number, context: number) =>
  layers * WEIGHTS[dtype].layer + D * 4 + WEIGHTS[dtype].lmHead + batch * D * 2 + batch * (context + 1) * (KV_PER_TOKEN / L) * layers;

interface Floor {
  bytes: number;
  ms: { h100: number; h200: number };
}
interface Extrapolated {
  ms: number;
  perLayerMs: number;
  fixedMs: number;
  floor: Floor;
  ofFloor: { h100: number; h200: number };
  valid: boolean;
}
interface Result {
  bench: string;
  schema: number;
  complete: boolean;
  executionProvider: string;
  shape: { name: string; hiddenSize: number; vocabSize: number; numHeads: number; numKvHeads: number };
  layerCounts: number[];
  extrapolatedTo: number;
  blockSize: number;
  steps: number;
  warmup: number;
  runs: {
    dtype: Dtype;
    layers: number;
    fileBytes: number;
    prefill: { tokens: number; ms: number; floor: Floor }[];
    decode: { batch: number; context: number; rows: "candidates" | "whole"; ms: number; sessionRunMs: number; bytesToDevicePerStep: number; bytesFromDevicePerStep: number; floor: Floor }[];
  }[];
  results: {
    dtype: Dtype;
    decode: ({ batch: number; context: number; rows: string; tokensPerSec: number } & Extrapolated)[];
    prefill: ({ tokens: number; tokensPerSec: number } & Extrapolated)[];
    batchScaling: { context: number; batch: number; over: number; ratio: number }[];
  }[];
}

let dir: string;
let result: Result;
let stdout: string;
let log: string;

beforeAll(async () => {
  await ensureVulkanDevice();
  dir = await mkdtemp(path.join(os.tmpdir(), "device-bench-test-"));
  ({ stdout } = await run(tsx, ["bench/device.ts", "--tiny", "--out", path.join(dir, "out"), "--work", path.join(dir, "models")], { timeout: 600_000 }));
  result = JSON.parse(await readFile(path.join(dir, "out", "bench-device.json"), "utf8"));
  log = await readFile(path.join(dir, "out", "bench-device.log"), "utf8");
}, 660_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("bench:device --tiny", () => {
  it("measures every dtype × layer count × batch × context on the WebGPU provider", () => {
    expect(result).toMatchObject({ bench: "device", schema: 1, complete: true, executionProvider: "webgpu", layerCounts: [1, 3], extrapolatedTo: L });
    expect(result.shape).toMatchObject({ name: "tiny", hiddenSize: D, vocabSize: V, numHeads: 4, numKvHeads: 2 });
    expect(result.runs.map((r) => `${r.dtype}×${r.layers}`)).toEqual(["fp16×1", "fp16×3", "int4×1", "int4×3"]);
    for (const r of result.runs) {
      expect(r.fileBytes).toBeGreaterThan(r.layers * WEIGHTS[r.dtype].layer + WEIGHTS[r.dtype].lmHead);
      expect(r.prefill.map((p) => p.tokens)).toEqual([64, 256]);
      expect(r.decode.map((d) => `${d.batch}@${d.context} ${d.rows}`)).toEqual([
        ...["1@64", "8@64", "32@64", "1@256", "8@256", "32@256"].map((c) => `${c} candidates`),
        ...["1@64", "8@64", "32@64"].map((c) => `${c} whole`),
      ]);
      for (const p of r.prefill) expect(p.ms).toBeGreaterThan(0);
      for (const d of r.decode) {
        expect(d.ms).toBeGreaterThan(0);
        expect(d.sessionRunMs).toBeGreaterThan(0);
        expect(d.sessionRunMs).toBeLessThanOrEqual(d.ms);
      }
    }
    expect(stdout).toContain("fp16, 40 layers");
    expect(stdout).toContain("int4, 40 layers");
    expect(log).toBe(stdout);
  });

  it("brings back each row's ranked head per decode step (plus its logits row only when asked), and sends only small inputs", () => {
    for (const d of result.runs.flatMap((r) => r.decode)) {
      // top 64 values (f32) + their ids (i32) + one log-sum-exp (f32) per row: nothing proportional to the cache
      const ranked = d.batch * (64 * 4 + 64 * 4 + 4);
      expect(d.bytesFromDevicePerStep).toBe(d.rows === "whole" ? ranked + d.batch * V * 4 : ranked);
      const blocksPerRow = Math.ceil((d.context + result.warmup + result.steps) / result.blockSize);
      const rowIndex = d.rows === "whole" ? d.batch * 8 : 0;
      expect(d.bytesToDevicePerStep).toBeGreaterThan(0);
      expect(d.bytesToDevicePerStep).toBeLessThanOrEqual(d.batch * (8 + 4 + 4 + 8 + 4 * blocksPerRow) + 4 + 8 + rowIndex);
    }
  });

  it("computes the HBM floors from the shape", () => {
    for (const r of result.runs) {
      for (const d of r.decode) {
        const bytes = decodeBytes(r.dtype, r.layers, d.batch, d.context);
        expect(d.floor.bytes).toBe(bytes);
        expect(d.floor.ms.h100).toBeCloseTo((bytes / H100) * 1000, 12);
      }
    }
    for (const res of result.results) {
      for (const d of res.decode) {
        const bytes = decodeBytes(res.dtype, L, d.batch, d.context);
        expect(d.floor.bytes).toBe(bytes);
        expect(d.floor.ms.h100).toBeCloseTo((bytes / H100) * 1000, 12);
        expect(d.floor.ms.h200).toBeCloseTo((bytes / H200) * 1000, 12);
      }
      for (const p of res.prefill) {
        const T = p.tokens;
        const bytes = L * WEIGHTS[res.dtype].layer + D * 4 + WEIGHTS[res.dtype].lmHead + T * D * 2 + T * KV_PER_TOKEN;
        const flops = L * (2 * T * (128 * 64 + 64 * 64 + 3 * 128 * 64) + 4 * 4 * 16 * ((T * (T + 1)) / 2)) + 2 * V * D;
        expect(p.floor.bytes).toBe(bytes);
        expect(p.floor.ms.h200).toBeCloseTo(Math.max(bytes / H200, flops / FP16_PEAK) * 1000, 12);
      }
    }
  });

  it("extends each figure to 40 layers along the line through the two layer counts", () => {
    for (const res of result.results) {
      const [one, three] = [1, 3].map((layers) => result.runs.find((r) => r.dtype === res.dtype && r.layers === layers)!);
      res.decode.forEach((d, i) => {
        const perLayer = (three.decode[i].ms - one.decode[i].ms) / 2;
        expect(d.perLayerMs).toBeCloseTo(perLayer, 9);
        expect(d.ms).toBeCloseTo(one.decode[i].ms + (L - 1) * perLayer, 9);
        expect(d.fixedMs + L * d.perLayerMs).toBeCloseTo(d.ms, 9);
        expect(d.tokensPerSec).toBeCloseTo((d.batch * 1000) / d.ms, 9);
        expect(d.ofFloor.h200).toBeCloseTo(d.floor.ms.h200 / d.ms, 12);
        expect(d.valid).toBe(perLayer > 0 && d.ms > 0);
      });
      res.prefill.forEach((p, i) => {
        expect(p.ms).toBeCloseTo(one.prefill[i].ms + ((L - 1) * (three.prefill[i].ms - one.prefill[i].ms)) / 2, 9);
        expect(p.tokensPerSec).toBeCloseTo((p.tokens * 1000) / p.ms, 9);
      });
      for (const s of res.batchScaling) {
        const at = (b: number) => res.decode.find((d) => d.batch === b && d.context === s.context && d.rows === "candidates")!.tokensPerSec;
        expect(s).toMatchObject({ batch: 32, over: 1 });
        expect(s.ratio).toBeCloseTo(at(32) / at(1), 9);
      }
    }
  });
});

describe("the floors' byte counts", () => {
  it("are the device layout's weights: everything the builder stores but the embedding table, which a step only indexes", () => {
    for (const dtype of ["fp16", "int4"] as const) {
      for (const c of [PHI4_CONFIG, { ...PHI4_CONFIG, hiddenSize: 64, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, vocabSize: V }]) {
        expect(weightBytesRead(c, dtype, 0) + c.vocabSize * c.hiddenSize * 2).toBe(deviceWeightBytes(c, dtype));
      }
    }
    expect(kvBytesPerToken(PHI4_CONFIG)).toBe(deviceKvBytesPerToken(PHI4_CONFIG));
    expect(kvBytesPerToken(PHI4_CONFIG)).toBe(204_800);
  });
});

describe("bench:device flags", () => {
  it.each([
    [["--layers", "2,2"], "--layers takes two different layer counts"],
    [["--gpu", "a100"], "--gpu must be h100 or h200"],
    [["--block-size", "24"], "--block-size must be a power of two >= 32"],
    [["--contexts", "16384"], "exceeds the model's context"],
  ])("%j exits 2 with one line", async (args, message) => {
    const err = await run(tsx, ["bench/device.ts", ...args]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr.trim().split("\n")).toHaveLength(1);
    expect(err?.stderr).toContain(message);
  });
});
