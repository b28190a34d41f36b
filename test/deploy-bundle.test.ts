import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
/** Workers Free plan: 3 MB after compression (Paid: 10 MB). We stay inside the smaller one. */
const FREE_PLAN_LIMIT_BYTES = 3 * 1024 * 1024;

describe("deployable edge", () => {
  it("bundles offline with `wrangler deploy --dry-run` inside the Workers Free plan's size limit", async () => {
    const outdir = await mkdtemp(path.join(os.tmpdir(), "phi4-bundle-"));
    try {
      await run("node_modules/.bin/wrangler", ["deploy", "--dry-run", "--outdir", outdir], {
        env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
        timeout: 120_000,
      });
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
});
