import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { EXAMPLE_DEV_API_KEYS } from "../worker/development-key.ts";

const run = promisify(execFile);
/** Workers Free plan: 3 MB after compression (Paid: 10 MB). We stay inside the smaller one. */
const FREE_PLAN_LIMIT_BYTES = 3 * 1024 * 1024;

describe("deployable edge", () => {
  it("bundles offline with `wrangler deploy --dry-run` inside the Workers Free plan's size limit", async () => {
    const outdir = await mkdtemp(path.join(os.tmpdir(), "phi4-bundle-"));
    try {
      const { stdout } = await run("node_modules/.bin/wrangler", ["deploy", "--dry-run", "--outdir", outdir], {
        env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
        timeout: 120_000,
      });
      // The bindings a deploy would ship: the vars and the key namespace, never local-development ones.
      const bindings = stdout.slice(stdout.indexOf("bindings"));
      expect(bindings).toContain("API_KEYS");
      expect(bindings).toContain("SERVED_MODEL_ID");
      for (const local of ["DEV_API_KEY", "LOCAL_DEVELOPMENT", "REDIS_URL"]) expect(bindings).not.toContain(local);
      const files = await readdir(outdir);
      const main = files.find((f) => f.endsWith(".js"));
      expect(main, `bundle files: ${files.join(", ")}`).toBeDefined();
      const code = await readFile(path.join(outdir, main!));
      const compressed = gzipSync(code, { level: 9 }).length;
      expect(code.length).toBeGreaterThan(10_000); // really the app, not an empty shim
      expect(compressed).toBeLessThan(FREE_PLAN_LIMIT_BYTES);
      // Never ship the node-only halves to the edge.
      expect(code.toString()).not.toContain("onnxruntime");
    } finally {
      await rm(outdir, { recursive: true, force: true });
    }
  }, 180_000);

  it("shows only development-key values in .dev.vars.example that the Worker refuses", async () => {
    const example = await readFile(".dev.vars.example", "utf8");
    const value = /^DEV_API_KEY=(.*)$/m.exec(example)![1].trim();
    expect(EXAMPLE_DEV_API_KEYS).toContain(value);
    expect(example).toMatch(/^LOCAL_DEVELOPMENT=true$/m);
  });
});
