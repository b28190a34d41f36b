/**
 * A real GPU node process for tests and benchmarks: `node --import tsx gpu-node/service/main.ts` (the same entry as
 * `npm run gpu-node`, minus npm's wrapper processes, so a signal reaches the node itself), with its
 * JSON log lines collected and its status server on a free port (METRICS_PORT=0; the port comes from
 * the `listening` log line).
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseMetric } from "./stack-process.ts";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

export interface LogLine {
  msg: string;
  [field: string]: unknown;
}

export interface NodeProcess {
  name: string;
  child: ChildProcess;
  port: number;
  logs: LogLine[];
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  get(pathname: string): Promise<{ status: number; body: string }>;
  /** A metric's value from /metrics (sum over label sets matching `labels`). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

export interface NodeOptions {
  prefix: string;
  modelDir: string;
  name: string;
  env?: Record<string, string>;
}

export function spawnNode(options: NodeOptions): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", path.join("gpu-node", "service", "main.ts")], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      REDIS_URL: "redis://127.0.0.1:6379",
      REDIS_PREFIX: options.prefix,
      MODEL_DIR: options.modelDir,
      METRICS_PORT: "0",
      NODE_NAME: options.name,
      KV_CACHE_TOKENS: "4096",
      INTRA_OP_THREADS: "1",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

export async function startNode(options: NodeOptions): Promise<NodeProcess> {
  const child = spawnNode(options);
  const logs: LogLine[] = [];
  const listeners = new Set<() => void>();
  let stderr = "";
  let buffered = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ msg: line });
      }
    }
    for (const l of listeners) l();
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      resolve({ code, signal });
      for (const l of listeners) l();
    }));

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 30_000) =>
    new Promise<LogLine>((resolve, reject) => {
      const check = () => {
        const found = logs.find(predicate);
        if (found) {
          done();
          resolve(found);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done();
          reject(new Error(`node ${options.name} exited (${child.exitCode ?? child.signalCode}) before the awaited log line; stderr: ${stderr.slice(-2000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`node ${options.name}: awaited log line did not come within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });

  const listening = await waitForLog((l) => l.msg === "listening");
  await waitForLog((l) => l.msg === "ready");
  const port = listening.port as number;
  const get = async (pathname: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${pathname}`);
    return { status: res.status, body: await res.text() };
  };
  return {
    name: options.name,
    child,
    port,
    logs,
    get stderr() {
      return stderr;
    },
    exited,
    get,
    metric: async (name, labels = {}) => parseMetric((await get("/metrics")).body, name, labels),
    waitForLog,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}
