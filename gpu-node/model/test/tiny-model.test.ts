import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { RandomWeights } from "../random-weights.ts";
import { writeModel } from "../write-model.ts";
import { parseTinyModelArgs } from "../cli/tiny-model.ts";
import { tinyConfig } from "../tiny-model.ts";

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "../../..");
const tsx = path.join(repoRoot, "node_modules/.bin/tsx");
const cli = path.join(repoRoot, "gpu-node/model/cli/tiny-model.ts");
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "tiny-model-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function hashDir(d: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(d)).sort()) out[name] = createHash("sha256").update(await readFile(path.join(d, name))).digest("hex");
  return out;
}

describe("tiny model", () => {
  it("npm run model:tiny writes the same bytes for the same seed and different bytes for another seed", async () => {
    const a = path.join(dir, "a");
    const b = path.join(dir, "b");
    const c = path.join(dir, "c");
    const started = performance.now();
    const { stdout } = await run(tsx, [cli, "--out", a, "--seed", "42"], { cwd: repoRoot });
    expect(performance.now() - started).toBeLessThan(15_000); // builds in seconds
    expect(stdout).toContain(`wrote ${a}`);
    await run(tsx, [cli, "--out", b, "--seed", "42"], { cwd: repoRoot });
    await run(tsx, [cli, "--out", c, "--seed", "43"], { cwd: repoRoot });
    const [ha, hb, hc] = await Promise.all([hashDir(a), hashDir(b), hashDir(c)]);
    expect(Object.keys(ha)).toEqual(["model-config.json", "model.onnx"]);
    expect(hb).toEqual(ha);
    expect(hc["model.onnx"]).not.toBe(ha["model.onnx"]);
    expect(hc["model-config.json"]).toBe(ha["model-config.json"]);
    const cfg = JSON.parse(await readFile(path.join(a, "model-config.json"), "utf8"));
    expect(cfg).toMatchObject({ layoutVersion: 1, dtype: "fp32", vocabSize: 100_352, numLayers: 2, hiddenSize: 64, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, contextLength: 16_384, ropeTheta: 250_000, eosTokenIds: [100_265, 100_257], padTokenId: 100_349 });
  }, 60_000);

  it("bad flags: one line on stderr, exit code 2, nothing written", async () => {
    for (const args of [["--seed", "1"], ["--out", path.join(dir, "x"), "--layers", "0"], ["--out", path.join(dir, "x"), "--heads", "3"], ["--out", path.join(dir, "x"), "--bogus"], ["--out", path.join(dir, "x"), "--dtype", "fp8"]]) {
      const err = await run(tsx, [cli, ...args], { cwd: repoRoot }).then(() => undefined, (e) => e as { code: number; stderr: string });
      expect(err?.code, args.join(" ")).toBe(2);
      expect(err?.stderr.trim().split("\n")).toHaveLength(1);
      expect(err?.stderr).toMatch(/^model:tiny: /);
    }
    expect(await readdir(dir)).not.toContain("x");
  }, 60_000);

  it("parses the size flags into a consistent config", () => {
    const args = parseTinyModelArgs(["--out", "d", "--layers", "8", "--hidden", "1024", "--heads", "16", "--kv-heads", "4", "--intermediate", "2816"]);
    expect(args.config).toMatchObject({ numLayers: 8, hiddenSize: 1024, numHeads: 16, numKvHeads: 4, headDim: 64, intermediateSize: 2816, vocabSize: 100_352 });
    expect(() => parseTinyModelArgs(["--out", "d", "--hidden", "96", "--heads", "4"])).toThrow(/head size .* = 24 must be a multiple of 16/);
    expect(() => parseTinyModelArgs(["--out", "d", "--heads", "4", "--kv-heads", "3"])).toThrow(/--heads \(4\) must be a multiple of --kv-heads \(3\)/);
  });

  it("random weights are deterministic per tensor, scaled like an initialised model", async () => {
    const config = tinyConfig();
    const w1 = new RandomWeights(config, 5);
    const w2 = new RandomWeights(config, 5);
    const name = "model.layers.1.mlp.down_proj.weight";
    // Order of requests does not matter.
    await w2.get("model.embed_tokens.weight");
    const a = await w1.get(name);
    const b = await w2.get(name);
    expect(a.shape).toEqual([64, 128]);
    expect(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer))).toBe(true);
    let sum = 0;
    let sq = 0;
    for (const v of a.data) {
      sum += v;
      sq += v * v;
    }
    const mean = sum / a.data.length;
    const std = Math.sqrt(sq / a.data.length - mean * mean);
    expect(Math.abs(mean)).toBeLessThan(0.002);
    expect(std).toBeGreaterThan(0.018);
    expect(std).toBeLessThan(0.022);
    const norm = await w1.get("model.norm.weight");
    expect(norm.data.every((v) => v > 0.9 && v < 1.1)).toBe(true);
    await expect(w1.get("model.layers.9.mlp.down_proj.weight")).rejects.toThrow(/no tensor named model\.layers\.9/);
  });

  it("a weight with the wrong shape fails naming the tensor and leaves no partial output", async () => {
    const out = path.join(dir, "wrong");
    const small = tinyConfig({ intermediateSize: 96 });
    await expect(writeModel(tinyConfig(), new RandomWeights(small, 1), { outDir: out, dtype: "fp32" })).rejects.toThrow(
      /tensor model\.layers\.0\.mlp\.gate_up_proj\.weight: shape \[192, 64\], expected \[256, 64\]/,
    );
    expect((await readdir(dir)).filter((n) => n.startsWith("wrong"))).toEqual([]);
  });

  it("rejects an inconsistent architecture before writing anything", async () => {
    await expect(writeModel(tinyConfig({ numKvHeads: 3 }), new RandomWeights(tinyConfig(), 1), { outDir: path.join(dir, "arch"), dtype: "fp32" })).rejects.toThrow(
      /numHeads \(4\) must be a multiple of numKvHeads \(3\)/,
    );
    expect((await readdir(dir)).filter((n) => n.startsWith("arch"))).toEqual([]);
  });
});
