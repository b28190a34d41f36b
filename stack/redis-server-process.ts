/**
 * Private redis-server processes for tests that must restart or reshape Redis (chaos, cluster): each on
 * free loopback ports, in its own temporary directory, without persistence, killed at stop(). Never
 * the shared instance on 6379.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./stack-process.ts";

export interface RedisServerProcess {
  port: number;
  url: string;
  /** Kills the server (SIGKILL: no shutdown save) and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function waitForPing(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on("error", () => {});
    try {
      await probe.connect();
      if ((await probe.ping()) === "PONG") return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      probe.disconnect();
    }
  }
}

export async function startRedisServer(extraArgs: string[] = []): Promise<RedisServerProcess> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "phi4-redis-"));
  const port = await freePort();
  let child: ChildProcess;
  const launch = async () => {
    child = spawn("redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", ...extraArgs,
    ], { stdio: "ignore" });
    await waitForPing(port);
  };
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisClusterProcesses {
  /** `redis-cluster://127.0.0.1:p1,127.0.0.1:p2,…` (shared/redis-url.ts). */
  url: string;
  nodes: Array<{ host: string; port: number }>;
  stop(): Promise<void>;
}

/** `masters` redis-servers in cluster mode (no replicas), joined with `redis-cli --cluster create`. */
export async function startRedisCluster(masters = 3): Promise<RedisClusterProcesses> {
  const servers: RedisServerProcess[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      // Each node needs a second port for the cluster bus; nodes.conf lives in the server's own dir.
      servers.push(await startRedisServer(["--cluster-enabled", "yes", "--cluster-port", String(await freePort()), "--cluster-node-timeout", "2000"]));
    }
    const created = spawnSync("redis-cli", ["--cluster", "create", ...servers.map((s) => `127.0.0.1:${s.port}`), "--cluster-replicas", "0", "--cluster-yes"], { encoding: "utf8", timeout: 60_000 });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout.slice(-1000)} ${created.stderr.slice(-1000)}`);
    // Every node must agree that all slots are served before clients start.
    const deadline = Date.now() + 30_000;
    for (const s of servers) {
      for (;;) {
        const info = spawnSync("redis-cli", ["-p", String(s.port), "cluster", "info"], { encoding: "utf8" }).stdout;
        if (/cluster_state:ok/.test(info)) break;
        if (Date.now() > deadline) throw new Error(`cluster node ${s.port} did not reach cluster_state:ok`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  const nodes = servers.map((s) => ({ host: "127.0.0.1", port: s.port }));
  return {
    url: `redis-cluster://${nodes.map((n) => `${n.host}:${n.port}`).join(",")}`,
    nodes,
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}
