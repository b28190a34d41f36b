/**
 * Starts the whole stack exactly as `npm start` does (stack/start-stack.ts), as a child process on free
 * ports with its own Redis prefix, and reads the base URL, dev key and GPU node pids it prints: what the
 * end-to-end tests and `bench:e2e` drive.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export interface Stack {
  baseURL: string;
  /** The playground page's URL, as `npm start` prints it. */
  playgroundURL: string;
  origin: string;
  apiKey: string;
  prefix: string;
  nodes: Array<{ pid: number; metrics: string }>;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.once("error", reject);
  });
}

export async function startStack(options: { gpuNodes?: number; extraEnv?: Record<string, string> } = {}): Promise<Stack> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "phi4-e2e-"));
  const workerPort = await freePort();
  const metricsPort = await freePort();
  const prefix = `e2e${process.pid}x${Date.now().toString(36)}`;
  const apiKey = `sk-e2e-${Math.random().toString(36).slice(2)}`;
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "stack/start-stack.ts"], {
    env: {
      ...process.env,
      WORKER_PORT: String(workerPort),
      METRICS_PORT: String(metricsPort),
      GPU_NODES: String(options.gpuNodes ?? 1),
      REDIS_PREFIX: prefix,
      DEV_API_KEY: apiKey,
      MODEL_DIR: path.join(dir, "model"),
      ...options.extraEnv,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stack did not start in time:\n${err.slice(-4000)}`)), 150_000);
    const check = () => {
      if (/Ctrl-C stops everything/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`stack exited with ${code}:\n${err.slice(-4000)}`));
    });
  });
  const baseURL = /base URL: (\S+)/.exec(out)![1];
  const nodes = [...out.matchAll(/gpu-node-\d+: pid (\d+), metrics (\S+)/g)].map((m) => ({ pid: Number(m[1]), metrics: m[2] }));
  return {
    baseURL,
    playgroundURL: /playground: (\S+)/.exec(out)![1],
    origin: new URL(baseURL).origin,
    apiKey: /API key:\s+(\S+)/.exec(out)![1],
    prefix,
    nodes,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A gauge or counter from a node's Prometheus text, summed over its label sets that include `labels`. */
export async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return parseMetric(await (await fetch(url)).text(), name, labels);
}

/** Sums the samples of one metric whose labels include `labels`, in Prometheus' text format. */
export function parseMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const set = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) total += Number(m[3]);
  }
  return total;
}
