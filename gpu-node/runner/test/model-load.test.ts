import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cp, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { ModelRunner } from "../model-runner.ts";
import { RandomWeights } from "../../model/random-weights.ts";
import { writeModel } from "../../model/write-model.ts";
import { tinyConfig } from "../../model/tiny-model.ts";

const config = tinyConfig({ numLayers: 1 });
const ortDir = path.dirname(createRequire(import.meta.url).resolve("onnxruntime-node/package.json"));
const cudaProviderLib = path.join(ortDir, "bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so");
let dir: string;
let good: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "runner-load-"));
  good = path.join(dir, "good");
  await writeModel(config, new RandomWeights(config, 1), { outDir: good, dtype: "fp32" });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A copy of the good model with its config edited. */
async function withConfig(name: string, edit: (c: Record<string, unknown>) => void): Promise<string> {
  const d = path.join(dir, name);
  await cp(good, d, { recursive: true });
  const file = path.join(d, "model-config.json");
  const c = JSON.parse(await readFile(file, "utf8"));
  edit(c);
  await writeFile(file, JSON.stringify(c));
  return d;
}

const load = (modelDir: string) => ModelRunner.load({ modelDir, numBlocks: 8, blockSize: 16, intraOpThreads: 1 });

describe("ModelRunner.load", () => {
  it("loads a model written by the builder", async () => {
    const r = await load(good);
    expect(r.config).toMatchObject({ numLayers: 1, hiddenSize: 64, vocabSize: 100_352, eosTokenIds: [100_265, 100_257], padTokenId: 100_349 });
    await r.release();
  });

  it("names a missing model-config.json", async () => {
    await expect(load(path.join(dir, "nowhere"))).rejects.toThrow(/nowhere: missing model-config\.json/);
  });

  it("names a missing model.onnx", async () => {
    const d = await withConfig("no-onnx", () => {});
    await rm(path.join(d, "model.onnx"));
    await expect(load(d)).rejects.toThrow(/no-onnx: missing model\.onnx$/);
  });

  it("names a missing external-data file the config promises", async () => {
    const d = await withConfig("no-data", (c) => (c.externalData = true));
    await expect(load(d)).rejects.toThrow(/missing model\.onnx\.data \(model-config\.json says externalData: true\)/);
  });

  it("names a config whose layer count does not match the graph", async () => {
    const d = await withConfig("layers", (c) => (c.numLayers = 2));
    await expect(load(d)).rejects.toThrow(/does not match model-config\.json \(numLayers 2\): missing inputs past_key\.1, past_value\.1/);
  });

  it("names a config whose vocabulary does not match the graph", async () => {
    const d = await withConfig("vocab", (c) => (c.vocabSize = 100_400));
    await expect(load(d)).rejects.toThrow(/logits has 100352 at axis 1, vocabSize is 100400/);
  });

  it("names a config whose head size does not match the graph", async () => {
    const d = await withConfig("heads", (c) => {
      c.numHeads = 2;
      c.numKvHeads = 1;
      c.headDim = 32;
    });
    await expect(load(d)).rejects.toThrow(/past_key\.0 has 2 at axis 0, numKvHeads is 1/);
  });

  it("names an unknown layout version, a bad dtype and a missing field", async () => {
    await expect(load(await withConfig("layout", (c) => (c.layoutVersion = 99)))).rejects.toThrow(/field layoutVersion is 99, this runner reads layout 1/);
    await expect(load(await withConfig("dtype", (c) => (c.dtype = "bf16")))).rejects.toThrow(/field dtype is "bf16", expected one of fp32, fp16, int8, int4/);
    await expect(load(await withConfig("theta", (c) => delete c.ropeTheta))).rejects.toThrow(/field ropeTheta is missing or not a number/);
    await expect(load(await withConfig("eos", (c) => (c.eosTokenIds = [200_000])))).rejects.toThrow(/eosTokenIds must be a non-empty list of token ids below vocabSize/);
  });

  it("names a corrupt model.onnx", async () => {
    const d = await withConfig("corrupt", () => {});
    await truncate(path.join(d, "model.onnx"), 1000);
    await expect(load(d)).rejects.toThrow(/model\.onnx: onnxruntime could not load the model \(cpu\)/);
  });

  it.runIf(!existsSync(cudaProviderLib))("ORT_EP=cuda without the CUDA provider installed fails saying how to install it", async () => {
    const before = process.env.ORT_EP;
    process.env.ORT_EP = "cuda";
    try {
      await expect(load(good)).rejects.toThrow(/ORT_EP=cuda: the CUDA execution provider is not available .*npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12/);
    } finally {
      if (before === undefined) delete process.env.ORT_EP;
      else process.env.ORT_EP = before;
    }
  });

  it("refuses an unknown ORT_EP and bad cache geometry", async () => {
    const before = process.env.ORT_EP;
    process.env.ORT_EP = "tpu";
    try {
      await expect(load(good)).rejects.toThrow(/ORT_EP must be "cpu" or "cuda", got "tpu"/);
    } finally {
      if (before === undefined) delete process.env.ORT_EP;
      else process.env.ORT_EP = before;
    }
    await expect(ModelRunner.load({ modelDir: good, numBlocks: 0, blockSize: 16 })).rejects.toThrow(/numBlocks must be a positive integer/);
  });
});
