/**
 * Starts the whole stack exactly as `npm start` does (gpu-node/cli/start-stack.ts) on free ports with its
 * own Redis prefix, and reads the base URL, dev key and GPU node pids it prints.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseMetric } from "../../gpu-node/service/test/node-process.ts";

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
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "gpu-node/cli/start-stack.ts"], {
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

/** A gauge or counter from a node's Prometheus text, summed over its label sets. */
export async function metric(url: string, name: string): Promise<number> {
  return parseMetric(await (await fetch(url)).text(), name);
}
