/**
 * A GPU node runs from an install without dev dependencies, as an operator deploys one: the package
 * files copied to a fresh directory, `npm ci --omit=dev` (from the npm cache where it can), then
 * `npm run gpu-node`, which builds the tiny model on first start and serves /health and /ready. It would
 * fail if anything the node loads at runtime (tsx included) were only a devDependency.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cp, mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
/** What a GPU node's install needs: the package manifest and lock, npm's settings, and the code it runs. */
const PACKAGE_FILES = ["package.json", "package-lock.json", ".npmrc", "gpu-node", "shared"];

let dir: string;
let node: ChildProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "phi4-prod-install-"));
  for (const name of PACKAGE_FILES) await cp(path.join(REPO_ROOT, name), path.join(dir, name), { recursive: true });
  const install = spawnSync("npm", ["ci", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund"], { cwd: dir, encoding: "utf8" });
  if (install.status !== 0) throw new Error(`npm ci --omit=dev failed (${install.status}):\n${install.stderr.slice(-3000)}`);
}, 600_000);

afterAll(async () => {
  // Whatever of the node's process group is still running (a failed test) goes with its install.
  if (node?.pid) {
    try {
      process.kill(-node.pid, "SIGKILL");
    } catch {
      // the group is gone already
    }
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

const exists = (p: string) => stat(p).then(() => true, () => false);

describe("an install without dev dependencies", () => {
  it("holds the runtime dependencies and none of the dev ones", async () => {
    for (const dep of ["tsx", "onnxruntime-node", "bullmq", "js-tiktoken"]) expect(await exists(path.join(dir, "node_modules", dep)), dep).toBe(true);
    for (const dev of ["vitest", "wrangler", "typescript", "openai"]) expect(await exists(path.join(dir, "node_modules", dev)), dev).toBe(false);
  });

  it("starts a GPU node with `npm run gpu-node`: it builds the tiny model, answers /health and /ready, and drains on SIGTERM", async () => {
    const prefix = `prodinstall${process.pid}x${Date.now().toString(36)}`;
    // Its own session and process group (setsid), so the node under npm's and tsx's wrappers can be found and cleaned up.
    node = spawn("npm", ["run", "--silent", "gpu-node"], {
      cwd: dir,
      detached: true,
      env: { ...process.env, REDIS_PREFIX: prefix, METRICS_PORT: "0", NODE_NAME: "prod-install", KV_CACHE_TOKENS: "1024", INTRA_OP_THREADS: "1", MODEL_DIR: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    node.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    node.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
    // "close": npm has exited and so has every process holding its output pipes (tsx, the node).
    const closed = new Promise<number | null>((resolve) => node!.once("close", (code) => resolve(code)));

    await expect.poll(() => /"msg":"ready"/.test(out) || node!.exitCode !== null, { timeout: 120_000, interval: 250 }).toBe(true);
    expect(out, err.slice(-3000)).toMatch(/"msg":"ready"/);
    expect(out).toMatch(/built the tiny model/);
    expect(await exists(path.join(dir, "models", "tiny", "model-config.json"))).toBe(true);
    const logLine = (msg: string) =>
      out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { msg: string; port?: number; exitCode?: number }).find((l) => l.msg === msg);
    const port = logLine("listening")!.port!;
    for (const route of ["/health", "/ready"]) expect((await fetch(`http://127.0.0.1:${port}${route}`)).status, route).toBe(200);

    // SIGTERM to the node itself (under npm's and tsx's wrappers, which relay signals racily under load): it
    // drains and exits 0, and so do tsx and npm after it.
    const group = spawnSync("ps", ["-o", "pid=,args=", "-s", String(node.pid)], { encoding: "utf8" }).stdout;
    const nodeLine = group.split("\n").find((l) => l.includes("--import") && l.includes("gpu-node/service/main.ts"));
    expect(nodeLine, group).toBeDefined();
    process.kill(Number(nodeLine!.trim().split(/\s+/)[0]), "SIGTERM");
    expect(await closed, err.slice(-3000)).toBe(0);
    expect(logLine("stopped")).toMatchObject({ exitCode: 0 });
  }, 300_000);
});
