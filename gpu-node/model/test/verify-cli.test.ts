/**
 * `npm run model:verify`: a model converted from a checkpoint verifies against it (exit 0, one line per
 * step and a summary), in the host layout (CPU runner) and the device layout (WebGPU runner); a model converted from another checkpoint of the same shape does not (exit 1);
 * bad input fails with one line and exit 2.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_PHI3_CONFIG, writeRandomHfCheckpoint } from "./random-hf-checkpoint.ts";

const REPO_ROOT = join(import.meta.dirname, "..", "..", "..");
const CONVERT = join(REPO_ROOT, "gpu-node", "model", "cli", "convert.ts");
const VERIFY = join(REPO_ROOT, "gpu-node", "model", "cli", "verify.ts");

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(script: string, args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", "tsx", script, ...args], { cwd: REPO_ROOT });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let root: string;
/** The checkpoint (seed 42), its fp32 conversion, and an fp32 conversion of another checkpoint (seed 43, same shape). */
let checkpoint: string;
let model: string;
let otherModel: string;
/** A checkpoint with one more layer: its config cannot match `model`'s. */
let deeperCheckpoint: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "verify-cli-test-"));
  checkpoint = join(root, "hf");
  const otherCheckpoint = join(root, "hf-other");
  deeperCheckpoint = join(root, "hf-deeper");
  await writeRandomHfCheckpoint(checkpoint, { seed: 42, dtype: "BF16", shards: 2 });
  await writeRandomHfCheckpoint(otherCheckpoint, { seed: 43, dtype: "BF16" });
  await writeRandomHfCheckpoint(deeperCheckpoint, { seed: 42, dtype: "BF16", config: { ...TEST_PHI3_CONFIG, numLayers: TEST_PHI3_CONFIG.numLayers + 1 } });
  model = join(root, "model");
  otherModel = join(root, "model-other");
  for (const [from, out] of [
    [checkpoint, model],
    [otherCheckpoint, otherModel],
  ]) {
    const r = await run(CONVERT, ["--from", from, "--out", out, "--dtype", "fp32"]);
    expect(r.code, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The single stderr line of a refused run. */
function errorLine(r: CliResult): string {
  const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("error:"));
  expect(lines).toHaveLength(1);
  return lines[0];
}

describe("model:verify", () => {
  it("a model converted from the checkpoint: every step within fp32's tolerance, exit 0", async () => {
    const r = await run(VERIFY, ["--model", model, "--from", checkpoint, "--tokens", "3,141,59,265,358,97", "--steps", "6"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const stepLines = r.stdout.split("\n").filter((l) => l.startsWith("step "));
    expect(stepLines).toHaveLength(7); // the prefill and 6 decode steps
    expect(stepLines[0]).toMatch(/^step 0 prefill 6: /);
    for (const line of stepLines) expect(line).toMatch(/ ok$/);
    expect(r.stdout).toMatch(/tolerance 0\.0001/);
    const summary = r.stdout.trim().split("\n").at(-1)!;
    expect(summary).toMatch(/^PASS: max \|Δ logprob\| \S+ \(tolerance 0\.0001\) over 7 steps; greedy tokens equal at (\d+)\/\1 steps/);
    const maxError = Number(/max \|Δ logprob\| (\S+)/.exec(summary)![1]);
    expect(maxError).toBeLessThan(1e-4);
  });

  it("the device layout (fp16, WebGPU runner): within fp16's tolerance past the first KV block, exit 0", async () => {
    const deviceModel = join(root, "model-device");
    const converted = await run(CONVERT, ["--from", checkpoint, "--out", deviceModel, "--dtype", "fp16", "--layout", "device"]);
    expect(converted.code, converted.stderr).toBe(0);
    // 6 prompt tokens + 40 steps: the sequence crosses the device's 32-token block boundary.
    const r = await run(VERIFY, ["--model", deviceModel, "--from", checkpoint, "--tokens", "3,141,59,265,358,97", "--steps", "40"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\(fp16, device layout\)/);
    expect(r.stdout.split("\n").filter((l) => l.startsWith("step "))).toHaveLength(41);
    expect(r.stdout.trim().split("\n").at(-1)).toMatch(/^PASS: .*\(tolerance 0\.04\) over 41 steps/);
  });

  it("a model converted from another checkpoint of the same shape: beyond tolerance, exit 1", async () => {
    const r = await run(VERIFY, ["--model", otherModel, "--from", checkpoint, "--tokens", "3,141,59", "--steps", "2"]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/ FAIL\n/);
    expect(r.stdout.trim().split("\n").at(-1)).toMatch(/^FAIL: max \|Δ logprob\| .* step\(s\) failed$/);
    // Even a loose tolerance does not hide it: the logprobs differ by whole units.
    const loose = await run(VERIFY, ["--model", otherModel, "--from", checkpoint, "--tokens", "3,141,59", "--steps", "2", "--tolerance", "0.5"]);
    expect(loose.code, loose.stdout + loose.stderr).toBe(1);
  });

  it.each([
    ["no --from", () => ["--model", model], /--model and --from are required/],
    ["a missing model directory", () => ["--model", join(root, "nowhere"), "--from", checkpoint, "--tokens", "1"], /nowhere: missing model-config\.json/],
    ["a missing checkpoint directory", () => ["--model", model, "--from", join(root, "nowhere"), "--tokens", "1"], /nowhere\/config\.json is missing/],
    ["a checkpoint of another architecture", () => ["--model", model, "--from", deeperCheckpoint, "--tokens", "1"], /model-config\.json has numLayers 2, --from's config\.json 3: the model was not converted from this checkpoint/],
    ["an unknown flag", () => ["--model", model, "--from", checkpoint, "--seed", "1"], /Unknown option '--seed'/],
    ["--prompt and --tokens", () => ["--model", model, "--from", checkpoint, "--tokens", "1", "--prompt", "hi"], /pass --prompt or --tokens, not both/],
    ["--tokens not ids", () => ["--model", model, "--from", checkpoint, "--tokens", "1,x"], /--tokens 1,x is not a comma-separated list of token ids/],
    ["--tokens outside the vocabulary", () => ["--model", model, "--from", checkpoint, "--tokens", "1,512"], /--tokens gives token id 512, outside the model's vocabulary of 512/],
    ["a prompt the tiny vocabulary cannot hold", () => ["--model", model, "--from", checkpoint, "--prompt", "Hello, world"], /--prompt \(Phi-4 tokenizer\) gives token id \d+, outside the model's vocabulary of 512; pass --tokens/],
    ["--steps not a whole number", () => ["--model", model, "--from", checkpoint, "--tokens", "1", "--steps=-1"], /--steps -1 is not a whole number ≥ 0/],
    ["--steps past the context", () => ["--model", model, "--from", checkpoint, "--tokens", "1,2", "--steps", "255"], /2 prompt tokens \+ 255 steps exceed the model's context of 256/],
    ["--tolerance zero", () => ["--model", model, "--from", checkpoint, "--tokens", "1", "--tolerance", "0"], /--tolerance 0 is not a positive number/],
  ] as Array<[string, () => string[], RegExp]>)("%s → exit 2 with one line", async (_name, args, message) => {
    const r = await run(VERIFY, args());
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(errorLine(r)).toMatch(message);
    expect(r.stdout).toBe("");
  });
});
