/**
 * `npm run model:convert`: a good checkpoint becomes a model directory; bad input fails with one
 * line naming the field or tensor, exit code 2, and nothing left on disk.
 */
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_PHI3_CONFIG, writeRandomHfCheckpoint, type RandomHfCheckpointOptions } from "./random-hf-checkpoint.ts";

const REPO_ROOT = join(import.meta.dirname, "..", "..", "..");
const CONVERT = join(REPO_ROOT, "gpu-node", "model", "cli", "convert.ts");

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "convert-cli-test-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function convert(args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", "tsx", CONVERT, ...args], { cwd: REPO_ROOT });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Writes a checkpoint (broken as the options say), converts it to `<name>-out`, and returns the result. */
async function convertCheckpoint(name: string, options: RandomHfCheckpointOptions, dtype = "fp32"): Promise<CliResult & { out: string }> {
  const from = join(root, name);
  await writeRandomHfCheckpoint(from, options);
  const out = join(root, `${name}-out`);
  return { ...(await convert(["--from", from, "--out", out, "--dtype", dtype])), out };
}

/** Entries beside the checkpoints named after `out`: the output itself and any staging directory. */
async function entriesNamedAfter(out: string): Promise<string[]> {
  const base = basename(out);
  return (await readdir(root)).filter((n) => n === base || n.startsWith(`${base}.`) || n.startsWith(`.${base}.`));
}

/** The single stderr line of a failed conversion. */
function errorLine(r: CliResult): string {
  const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("error:"));
  expect(lines).toHaveLength(1);
  return lines[0];
}

describe("model:convert", () => {
  it("converts a sharded bf16 checkpoint into model.onnx + model-config.json and leaves nothing else", async () => {
    const r = await convertCheckpoint("good", { shards: 3, dtype: "BF16" });
    expect(r.code, r.stderr).toBe(0);
    expect((await readdir(r.out)).sort()).toEqual(["model-config.json", "model.onnx"]);
    const config = JSON.parse(await readFile(join(r.out, "model-config.json"), "utf8"));
    expect(config).toMatchObject({ architecture: "Phi3ForCausalLM", dtype: "fp32", vocabSize: 512, numLayers: 2, numKvHeads: 2, headDim: 16, eosTokenIds: [500, 501], padTokenId: 502, contextLength: 256 });
    expect(await entriesNamedAfter(r.out)).toEqual(["good-out"]);
  });

  it.each([
    ["int8", 8],
    ["int4", 4],
  ])("--dtype %s writes every Linear as MatMulNBits with bits %d", async (dtype, bits) => {
    const r = await convertCheckpoint(`quantized-${dtype}`, { dtype: "BF16" }, dtype);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(await readFile(join(r.out, "model-config.json"), "utf8")).dtype).toBe(dtype);
    const graph = (await readFile(join(r.out, "model.onnx"))).toString("latin1");
    // 2 layers × (qkv, o, gate_up, down) + lm_head, and no float MatMul left over a Linear weight.
    expect(graph.match(/MatMulNBits/g)?.length).toBeGreaterThanOrEqual(9);
    expect(graph).toContain(dtype === "int8" ? "lm_head.weight.q8" : "lm_head.weight.q4");
    expect(graph).not.toContain(dtype === "int8" ? "lm_head.weight.q4" : "lm_head.weight.q8");
  });

  it.each([
    ["wrong architecture", { configOverrides: { architectures: ["LlamaForCausalLM"] } }, /config\.json: architectures is \["LlamaForCausalLM"\], expected one including "Phi3ForCausalLM"/],
    ["rope scaling set", { configOverrides: { rope_scaling: { type: "longrope", short_factor: [1], long_factor: [1] } } }, /config\.json: rope_scaling is .*longrope.* not supported/],
    ["missing tensor", { omitTensors: ["model.layers.1.mlp.down_proj.weight"] }, /tensor model\.layers\.1\.mlp\.down_proj\.weight is missing/],
    ["shape mismatch", { reshapeTensors: { "model.layers.0.self_attn.o_proj.weight": [64, 48] } }, /tensor model\.layers\.0\.self_attn\.o_proj\.weight has shape \[64,48\], config\.json implies \[64,64\]/],
    ["missing config field", { configOverrides: { num_hidden_layers: undefined } }, /config\.json: num_hidden_layers is undefined/],
  ] as Array<[string, RandomHfCheckpointOptions, RegExp]>)("%s → exit 2, one line naming it, no output", async (name, options, message) => {
    const r = await convertCheckpoint(name.replace(/ /g, "-"), options);
    expect(r.code).toBe(2);
    expect(errorLine(r)).toMatch(message);
    expect(await entriesNamedAfter(r.out)).toEqual([]);
  });

  it("refuses bad flags and a non-empty --out with exit 2, touching nothing", async () => {
    const from = join(root, "flags");
    await writeRandomHfCheckpoint(from);
    const badDtype = await convert(["--from", from, "--out", join(root, "flags-out"), "--dtype", "int2"]);
    expect(badDtype.code).toBe(2);
    expect(errorLine(badDtype)).toMatch(/--dtype int2 is not one of fp32, fp16, int8, int4/);
    const noFrom = await convert(["--out", join(root, "flags-out"), "--dtype", "fp32"]);
    expect(noFrom.code).toBe(2);
    expect(errorLine(noFrom)).toMatch(/--from, --out and --dtype are required/);
    const notCheckpoint = await convert(["--from", join(root, "nowhere"), "--out", join(root, "flags-out"), "--dtype", "fp32"]);
    expect(notCheckpoint.code).toBe(2);
    expect(errorLine(notCheckpoint)).toMatch(/nowhere\/config\.json is missing/);
    expect(await entriesNamedAfter(join(root, "flags-out"))).toEqual([]);

    const occupied = join(root, "occupied");
    await mkdir(occupied);
    await writeFile(join(occupied, "keep.txt"), "mine");
    const r = await convert(["--from", from, "--out", occupied, "--dtype", "fp32"]);
    expect(r.code).toBe(2);
    expect(errorLine(r)).toMatch(/--out .*occupied already exists and is not empty \(pass --force to replace it\)/);
    expect(await readdir(occupied)).toEqual(["keep.txt"]);
    const forced = await convert(["--from", from, "--out", occupied, "--dtype", "fp32", "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect((await readdir(occupied)).sort()).toEqual(["model-config.json", "model.onnx"]);
    expect(await entriesNamedAfter(occupied)).toEqual(["occupied"]);
  });

  it("an interrupt (SIGINT) mid-conversion exits 130 and removes everything it wrote", async () => {
    const from = join(root, "interrupted");
    // Big enough that converting takes a while: 32000 × 256 embeddings, 8 layers.
    await writeRandomHfCheckpoint(from, {
      config: { ...TEST_PHI3_CONFIG, vocabSize: 32_000, hiddenSize: 256, numLayers: 8, headDim: 64, intermediateSize: 1024 },
    });
    const out = join(root, "interrupted-out");
    const child = spawn(process.execPath, ["--import", "tsx", CONVERT, "--from", from, "--out", out, "--dtype", "fp32"], { cwd: REPO_ROOT });
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
    // Wait until it has started writing (its staging directory exists), then interrupt.
    while ((await entriesNamedAfter(out)).length === 0) await new Promise((r) => setTimeout(r, 5));
    child.kill("SIGINT");
    expect(await exited, stderr).toBe(130);
    expect(stderr).toMatch(/error: interrupted by SIGINT; nothing was written/);
    expect(await entriesNamedAfter(out)).toEqual([]);
  });
});
