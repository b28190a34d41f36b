/**
 * `npm start`: the whole stack on one machine. Uses the Redis at REDIS_URL (or starts `redis-server` on
 * loopback if nothing answers), builds the tiny model if MODEL_DIR has none, starts GPU_NODES GPU nodes
 * and `wrangler dev` on 127.0.0.1:WORKER_PORT, then prints the base URL and the development key.
 * Ctrl-C / SIGTERM stops every child and waits for them. It starts every part of the system, so it lives
 * beside them (stack/), not inside the GPU node's folder.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { failUsage } from "../gpu-node/cli/cli-error.ts";
import { ensureTinyModel, TINY_DEVICE_MODEL_DIR, TINY_MODEL_DIR } from "../gpu-node/model/tiny-model.ts";
import { parseRedisUrl, type RedisTarget } from "../shared/redis-url.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name: string) => path.join(root, "node_modules", ".bin", name);

const env = process.env;
const redisUrlText = env.REDIS_URL || "redis://127.0.0.1:6379";
const redisTarget = parseRedisTargetOrExit(redisUrlText);
const workerPort = intEnv("WORKER_PORT", 8787);
const gpuNodes = intEnv("GPU_NODES", 1);
const metricsBase = intEnv("METRICS_PORT", 9464);
// ORT_EP=webgpu serves the device layout: its tiny model lives apart from the host layout's.
const deviceLayout = env.ORT_EP === "webgpu";
const modelDir = path.resolve(env.MODEL_DIR ?? (deviceLayout ? TINY_DEVICE_MODEL_DIR : TINY_MODEL_DIR));
const devKey = env.DEV_API_KEY || `sk-dev-${randomBytes(18).toString("base64url")}`;
const prefix = env.REDIS_PREFIX ?? "phi4";

const children: ChildProcess[] = [];
let stopping = false;

function intEnv(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) failUsage(`${name} must be a whole number, got ${JSON.stringify(raw)}`);
  return n;
}

/** REDIS_URL as shared/redis-url.ts reads it; its errors never repeat the URL (it may hold a password). */
function parseRedisTargetOrExit(raw: string): RedisTarget {
  try {
    return parseRedisUrl(raw);
  } catch (err) {
    return failUsage((err as Error).message);
  }
}

function log(line: string): void {
  process.stderr.write(`[start] ${line}\n`);
}

function redisAnswers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (d) => done(d.toString().startsWith("+PONG") || d.toString().startsWith("-NOAUTH")));
  });
}

const gpuChildren: ChildProcess[] = [];

function start(name: string, command: string, args: string[], extraEnv: Record<string, string> = {}): ChildProcess {
  const child = spawn(command, args, { cwd: root, env: { ...env, ...extraEnv }, stdio: ["ignore", "inherit", "inherit"] });
  const isGpuNode = name.startsWith("gpu-node");
  child.once("exit", (code, signal) => {
    if (stopping) return;
    // A dead GPU node is survivable: its jobs fail over to the others. Redis or the edge is not.
    if (isGpuNode && gpuChildren.some((c) => c !== child && c.exitCode === null && c.signalCode === null)) {
      log(`${name} exited (${signal ?? code}); the other GPU nodes carry on`);
      return;
    }
    log(`${name} exited (${signal ?? code}); stopping the stack`);
    void stop(1);
  });
  if (isGpuNode) gpuChildren.push(child);
  children.push(child);
  return child;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (stopping) return;
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  log(`${what} did not come up within ${timeoutMs / 1000} s`);
  await stop(1);
}

async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return res.ok;
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await Promise.all(children.map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once("exit", () => resolve());
    c.kill("SIGTERM");
    setTimeout(() => c.kill("SIGKILL"), 15_000).unref();
  })));
  process.exit(code);
}

process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

/** Worker vars `npm start` passes on from its own environment. */
const WORKER_TUNABLES = ["RESUME_GRACE_MS", "STALLED_WRITE_MS"] as const;

/**
 * The Worker's local-development vars, in a file only this user can read: the dev key and the Redis URL
 * stay off command lines (visible to every user in `ps`). Removed when the stack stops.
 */
function workerEnvFile(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "phi4-worker-env-"));
  const file = path.join(dir, "worker.env");
  // Worker tunables set in this environment reach the Worker too (tests shorten the resume grace with it).
  const tunables = WORKER_TUNABLES.filter((name) => env[name]).map((name) => `${name}=${env[name]}\n`).join("");
  writeFileSync(file, `LOCAL_DEVELOPMENT=true\nDEV_API_KEY=${devKey}\nREDIS_URL=${redisUrlText}\nREDIS_PREFIX=${prefix}\n${tunables}`, { mode: 0o600 });
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return file;
}

/** One Redis: use it if it answers, else start redis-server on loopback (only there). */
async function ensureSingleRedis(redisUrl: URL): Promise<void> {
  const redisHost = redisUrl.hostname || "127.0.0.1";
  const redisPort = Number(redisUrl.port || 6379);
  if (!(await redisAnswers(redisHost, redisPort))) {
    if (!["127.0.0.1", "localhost", "::1", "[::1]"].includes(redisHost)) failUsage(`no Redis answers at ${redisHost}:${redisPort}`);
    log(`no Redis at ${redisHost}:${redisPort}; starting redis-server on 127.0.0.1:${redisPort}`);
    const redis = start("redis-server", "redis-server", ["--bind", "127.0.0.1", "--port", String(redisPort), "--save", "", "--appendonly", "no"]);
    const missing = await new Promise<boolean>((resolve) => {
      redis.once("error", () => resolve(true));
      setTimeout(() => resolve(false), 300);
    });
    if (missing) failUsage("redis-server is not installed: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL");
    await waitFor("redis-server", () => redisAnswers("127.0.0.1", redisPort), 10_000);
  }
}

async function main(): Promise<void> {
  if (redisTarget.kind === "cluster") {
    // A cluster is the operator's: it is never started here, only checked (some seed node answers).
    const answers = await Promise.all(redisTarget.nodes.map((n) => redisAnswers(n.host, n.port)));
    if (!answers.includes(true)) failUsage(`no Redis Cluster seed node answers at ${redisTarget.nodes.map((n) => `${n.host}:${n.port}`).join(",")}`);
  } else {
    await ensureSingleRedis(new URL(redisTarget.url));
  }

  if (await ensureTinyModel(modelDir, deviceLayout ? { dtype: "fp16", layout: "device" } : {})) log(`built the tiny model into ${modelDir}`);
  // wrangler is a development tool (a devDependency): an install without them can run GPU nodes, not the edge.
  if (!existsSync(bin("wrangler"))) failUsage("wrangler is not installed (npm ci without --omit=dev); `npm run gpu-node` runs a GPU node alone");

  for (let i = 0; i < gpuNodes; i++) {
    // node --import tsx (not the tsx wrapper): the pid we print is the node itself, so kill -9 really kills it.
    start(`gpu-node-${i}`, process.execPath, ["--import", "tsx", "gpu-node/service/main.ts"], {
      REDIS_URL: redisUrlText, REDIS_PREFIX: prefix, MODEL_DIR: modelDir, NODE_NAME: `gpu-node-${i}`,
      METRICS_PORT: String(metricsBase + i),
    });
  }
  start("wrangler dev", bin("wrangler"), [
    "dev", "--ip", "127.0.0.1", "--port", String(workerPort), "--show-interactive-dev-session=false",
    "--env-file", workerEnvFile(),
  ], { WRANGLER_SEND_METRICS: "false", NO_UPDATE_NOTIFIER: "1" });

  for (let i = 0; i < gpuNodes; i++) await waitFor(`gpu-node-${i}`, () => httpOk(`http://127.0.0.1:${metricsBase + i}/ready`), 120_000);
  await waitFor("wrangler dev", () => httpOk(`http://127.0.0.1:${workerPort}/health`), 120_000);
  if (stopping) return;
  process.stdout.write(
    `phi4-serve is up (${gpuNodes} GPU node${gpuNodes === 1 ? "" : "s"}, model ${modelDir})\n` +
      `  base URL: http://127.0.0.1:${workerPort}/v1\n` +
      `  playground: http://127.0.0.1:${workerPort}/\n` +
      `  API key:  ${devKey}\n` +
      gpuChildren.map((c, i) => `  gpu-node-${i}: pid ${c.pid}, metrics http://127.0.0.1:${metricsBase + i}/metrics\n`).join("") +
      `Try: curl http://127.0.0.1:${workerPort}/v1/chat/completions -H "Authorization: Bearer ${devKey}" ` +
      `-H "Content-Type: application/json" -d '{"model":"microsoft/phi-4","messages":[{"role":"user","content":"Hi"}]}'\n` +
      "Ctrl-C stops everything.\n",
  );
}

main().catch((e: Error) => {
  log(e.message);
  void stop(1);
});
