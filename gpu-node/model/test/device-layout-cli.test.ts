/**
 * The device layout from the command line: `model:tiny --layout device` and `model:convert --layout device`
 * record the layout in model-config.json; fp32 with the device layout, or an unknown layout, exit 2 with one line.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readModelFiles } from "../model-files.ts";
import { writeRandomHfCheckpoint } from "./random-hf-checkpoint.ts";

const REPO_ROOT = join(import.meta.dirname, "..", "..", "..");
const TINY = join(REPO_ROOT, "gpu-node", "model", "cli", "tiny-model.ts");
const CONVERT = join(REPO_ROOT, "gpu-node", "model", "cli", "convert.ts");
let root: string;

const run = (script: string, args: string[]) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", script, ...args], { cwd: REPO_ROOT }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "device-layout-cli-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("--layout device", () => {
  it("model:tiny writes an fp16 device-layout model and records the layout", async () => {
    const out = join(root, "tiny");
    const r = await run(TINY, ["--out", out, "--layout", "device"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("fp16, device layout");
    const config = JSON.parse(await readFile(join(out, "model-config.json"), "utf8"));
    expect(config).toMatchObject({ layout: "device", dtype: "fp16", kvDtype: "fp16" });
    expect((await readModelFiles(out)).layout).toBe("device");
  });

  it("model:tiny and model:convert refuse fp32 with the device layout, and unknown layouts, with one line and exit 2", async () => {
    const checkpoint = join(root, "hf");
    await writeRandomHfCheckpoint(checkpoint, { seed: 3 });
    const cases = [
      await run(TINY, ["--out", join(root, "x"), "--layout", "device", "--dtype", "fp32"]),
      await run(CONVERT, ["--from", checkpoint, "--out", join(root, "y"), "--dtype", "fp32", "--layout", "device"]),
      await run(TINY, ["--out", join(root, "z"), "--layout", "gpu"]),
      await run(CONVERT, ["--from", checkpoint, "--out", join(root, "w"), "--dtype", "fp16", "--layout", "gpu"]),
    ];
    for (const r of cases) {
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(cases[0].stderr).toContain("--dtype must be one of fp16, int4, got fp32");
    expect(cases[1].stderr).toContain("--dtype must be one of fp16, int4, got fp32");
    expect(cases[2].stderr).toContain("--layout must be one of host, device");
    expect(cases[3].stderr).toContain("--layout gpu is not one of host, device");
  });

  it("model:convert --dtype int4 --layout device records int4 on the device layout", async () => {
    const checkpoint = join(root, "hf4");
    await writeRandomHfCheckpoint(checkpoint, { seed: 4 });
    const out = join(root, "int4");
    const r = await run(CONVERT, ["--from", checkpoint, "--out", out, "--dtype", "int4", "--layout", "device"]);
    expect(r.code).toBe(0);
    const files = await readModelFiles(out);
    expect([files.layout, files.dtype, files.kvDtype]).toEqual(["device", "int4", "fp16"]);
  });
});
