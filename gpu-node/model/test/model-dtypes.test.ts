import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { RandomWeights } from "../random-weights.ts";
import { writeModel } from "../write-model.ts";
import { tinyConfig } from "../tiny-model.ts";
import { ModelRunner } from "../../runner/model-runner.ts";
import { float32ToFloat16Bits, quantizeInt4, quantizeInt8 } from "../graph/weight-encoding.ts";

const config = tinyConfig();
const prompt = Array.from({ length: 24 }, (_, i) => (i * 4099 + 11) % 100_000);
let dir: string;
let reference: Float32Array;

/** Prefill 23 tokens, then one cached decode step: logits of both. */
async function logitsOf(modelDir: string): Promise<Float32Array> {
  const r = await ModelRunner.load({ modelDir, numBlocks: 4, blockSize: 16, intraOpThreads: 2 });
  try {
    const first = await r.forward([{ tokens: prompt.slice(0, 23), pastLen: 0, blockTable: [0, 1] }]);
    const second = await r.forward([{ tokens: prompt.slice(23), pastLen: 23, blockTable: [0, 1] }]);
    const both = new Float32Array(first.length * 2);
    both.set(first);
    both.set(second, first.length);
    return both;
  } finally {
    await r.release();
  }
}

/** max |a-b| / max |b| */
function relativeError(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "model-dtypes-"));
  await writeModel(config, new RandomWeights(config, 3), { outDir: path.join(dir, "fp32"), dtype: "fp32" });
  reference = await logitsOf(path.join(dir, "fp32"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("model dtypes and external data", () => {
  it("external data: weights go to model.onnx.data and give the same logits as inline weights", async () => {
    const out = path.join(dir, "external");
    await writeModel(config, new RandomWeights(config, 3), { outDir: out, dtype: "fp32", inlineLimitBytes: 0 });
    expect((await readdir(out)).sort()).toEqual(["model-config.json", "model.onnx", "model.onnx.data"]);
    expect((await stat(path.join(out, "model.onnx"))).size).toBeLessThan(2_000_000); // graph + rope tables only
    expect((await stat(path.join(out, "model.onnx.data"))).size).toBeGreaterThan(50_000_000);
    expect(JSON.parse(await readFile(path.join(out, "model-config.json"), "utf8")).externalData).toBe(true);
    expect(relativeError(await logitsOf(out), reference)).toBe(0);
  });

  it("rewriting a directory replaces the model and drops a stale data file", async () => {
    const out = path.join(dir, "external");
    await writeModel(config, new RandomWeights(config, 3), { outDir: out, dtype: "fp32" });
    expect((await readdir(out)).sort()).toEqual(["model-config.json", "model.onnx"]);
    expect((await readdir(dir)).some((n) => n.includes(".partial-"))).toBe(false);
  });

  it("fp16 weights: float16 storage, logits close to fp32", async () => {
    const out = path.join(dir, "fp16");
    await writeModel(config, new RandomWeights(config, 3), { outDir: out, dtype: "fp16" });
    const size32 = (await stat(path.join(dir, "fp32", "model.onnx"))).size;
    expect((await stat(path.join(out, "model.onnx"))).size).toBeLessThan(size32 * 0.55);
    const err = relativeError(await logitsOf(out), reference);
    console.log(`fp16 relative logit error vs fp32: ${err.toExponential(2)}`);
    expect(err).toBeLessThan(5e-3);
  });

  it("int4 weights: MatMulNBits, logits near fp32", async () => {
    const out = path.join(dir, "int4");
    await writeModel(config, new RandomWeights(config, 3), { outDir: out, dtype: "int4" });
    const logits = await logitsOf(out);
    const err = relativeError(logits, reference);
    console.log(`int4 relative logit error vs fp32: ${err.toExponential(2)}, cosine ${cosine(logits, reference).toFixed(4)}`);
    expect(err).toBeLessThan(0.25);
    expect(cosine(logits, reference)).toBeGreaterThan(0.97); // same function, 4-bit noise on N(0, 0.02²) weights
    expect(err).toBeGreaterThan(0); // really quantised
  });

  it("int8 weights: MatMulNBits bits 8, logits much nearer fp32 than int4", async () => {
    const out = path.join(dir, "int8");
    await writeModel(config, new RandomWeights(config, 3), { outDir: out, dtype: "int8" });
    const logits = await logitsOf(out);
    const err = relativeError(logits, reference);
    console.log(`int8 relative logit error vs fp32: ${err.toExponential(2)}, cosine ${cosine(logits, reference).toFixed(6)}`);
    // 127 levels per block instead of 7 (≈ 18× finer than int4); activations are rounded to int8 too (accuracy_level 4).
    expect(err).toBeLessThan(0.03);
    expect(cosine(logits, reference)).toBeGreaterThan(0.9995);
    expect(err).toBeGreaterThan(0); // really quantised
    const size32 = (await stat(path.join(dir, "fp32", "model.onnx"))).size;
    const size8 = (await stat(path.join(out, "model.onnx"))).size;
    // Linear weights take 36 bytes per 32 values (codes + a float32 scale), the embedding table fp16.
    expect(size8).toBeLessThan(size32 * 0.45);
    expect(size8).toBeGreaterThan(size32 * 0.3);
  });

  it("float16 conversion rounds to nearest even and handles the edges", () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(70000)).toBe(0x7c00);
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float32ToFloat16Bits(2 ** -26)).toBe(0x0000);
    expect(float32ToFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
  });

  it("int4 packing: symmetric codes around 8, low nibble first, max maps to ±7", () => {
    const w = new Float32Array(32);
    w[0] = 7;
    w[1] = -7;
    w[2] = 3;
    const q = quantizeInt4(w, 1, 32);
    expect(q.scales[0]).toBe(1);
    expect(q.packed[0]).toBe(15 | (1 << 4));
    expect(q.packed[1]).toBe(11 | (8 << 4));
  });

  it("int8 codes: symmetric around 128, one byte per value, max maps to ±127, short rows padded with 128", () => {
    const w = new Float32Array(40);
    w[0] = 127;
    w[1] = -127;
    w[2] = 3.4;
    w[3] = -0.6;
    w[33] = 2; // second block of a 40-wide row: 8 values, 24 padding codes
    const q = quantizeInt8(w, 1, 40);
    expect(q.blocksPerRow).toBe(2);
    expect(q.codes).toHaveLength(64);
    expect(q.scales[0]).toBe(1);
    expect(Array.from(q.codes.subarray(0, 5))).toEqual([255, 1, 131, 127, 128]);
    expect(q.scales[1]).toBeCloseTo(2 / 127, 7);
    expect(Array.from(q.codes.subarray(32, 35))).toEqual([128, 255, 128]);
    expect(q.codes.subarray(40).every((c) => c === 128)).toBe(true);
  });
});
