import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { phi4Tokenizer } from "../../tokenizer/phi4-tokenizer.ts";

const run = promisify(execFile);
const tsx = "node_modules/.bin/tsx";

async function cli(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(tsx, [`gpu-node/cli/${script}.ts`, ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("operator CLI", () => {
  it("tokenize prints the ids as one JSON array", async () => {
    const { code, stdout } = await cli("tokenize", ["Hello world <|im_end|>"]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual(phi4Tokenizer().encode("Hello world <|im_end|>"));
  });

  it("render prints the prompt text and ids", async () => {
    const { code, stdout } = await cli("render", ['[{"role":"user","content":"Hi"}]']);
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.text).toBe("<|im_start|>user<|im_sep|>Hi<|im_end|><|im_start|>assistant<|im_sep|>");
    expect(out.ids[0]).toBe(100_264);
    expect(out.ids.at(-1)).toBe(100_266);
  });

  it.each([
    ["tokenize", []],
    ["render", ["not json"]],
    ["render", ['[{"role":"assistant","content":"no user"}]']],
    ["render", ['{"role":"user"}']],
  ])("%s %j fails with one line on stderr and exit code 2", async (script, args) => {
    const { code, stdout, stderr } = await cli(script, args as string[]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr).toMatch(/^error: /);
  });
});
