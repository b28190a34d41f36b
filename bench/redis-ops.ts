/**
 * `npm run bench:redis-ops [-- --json] [--requests N] [--tokens N] [--concurrency N] [--n N] [--cluster]`
 *
 * The Redis side of the capacity model: what one request and one generated token cost Redis. A private
 * redis-server on a free port (or, with --cluster, three masters in cluster mode) serves one real GPU
 * node process (tiny model); this process plays the Worker with the Worker's own functions
 * (admitAndEnqueue: live-node check, queue depth, admission script, meta, BullMQ add; StreamReader's
 * blocking reads; expireFinished; release). After the run, INFO commandstats of every server gives
 * the calls and Redis CPU time (usec) of each command, summed; the background traffic of the idle node
 * (heartbeat, BullMQ stalled checks, lock renewals, the blocking fetch) is counted too, as it is in
 * production. Commands run inside Lua scripts appear as their own rows (Redis counts them), so the
 * table shows both round trips (eval/evalsha, xread, …) and the work inside them.
 */
import { parseArgs } from "node:util";
import { Cluster, Redis } from "ioredis";
import { CONCURRENCY_LEASE_MS } from "../shared/limits.ts";
import { newCompletionId, PROTOCOL_VERSION } from "../shared/protocol.ts";
import { redisKeys } from "../shared/redis-keys.ts";
import { chatRequest } from "../stack/chat-jobs.ts";
import { startNode } from "../stack/node-process.ts";
import { cachedTinyModel } from "../gpu-node/model/tiny-model.ts";
import { startRedisCluster, startRedisServer } from "../stack/redis-server-process.ts";
import { admitAndEnqueue } from "../worker/admission.ts";
import { expireFinished } from "../worker/completion-meta.ts";
import { release } from "../worker/rate-limit.ts";
import type { RedisClient } from "../worker/redis.ts";
import { StreamReader } from "../worker/stream-reader.ts";

function parse() {
  const { values } = parseArgs({
    options: {
      json: { type: "boolean", default: false },
      requests: { type: "string", default: "64" },
      tokens: { type: "string", default: "64" },
      concurrency: { type: "string", default: "8" },
      n: { type: "string", default: "1" },
      cluster: { type: "boolean", default: false },
    },
  });
  const int = (name: string, v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) {
      process.stderr.write(`bench:redis-ops: --${name} must be a positive integer, got ${JSON.stringify(v)}\n`);
      process.exit(2);
    }
    return Number(v);
  };
  return {
    json: values.json!, cluster: values.cluster!, requests: int("requests", values.requests!), tokens: int("tokens", values.tokens!),
    concurrency: int("concurrency", values.concurrency!), n: int("n", values.n!),
  };
}

interface CommandStat {
  calls: number;
  usec: number;
}

async function commandStats(servers: Redis[]): Promise<Map<string, CommandStat>> {
  const total = new Map<string, CommandStat>();
  for (const server of servers) {
    const info = (await server.info("commandstats")) as string;
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
      const s = total.get(m[1]) ?? { calls: 0, usec: 0 };
      s.calls += Number(m[2]);
      s.usec += Number(m[3]);
      total.set(m[1], s);
    }
  }
  return total;
}

async function main(): Promise<void> {
  const args = parse();
  const say = (line: string) => !args.json && process.stderr.write(line + "\n");
  const prefix = `bench-ops-${process.pid}`;
  const keys = redisKeys(prefix);
  let url: string;
  let stop: () => Promise<void>;
  let client: Redis | Cluster;
  let servers: Redis[];
  if (args.cluster) {
    const cluster = await startRedisCluster(3);
    url = cluster.url;
    stop = cluster.stop;
    client = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: null } });
    servers = cluster.nodes.map((n) => new Redis(n.port, n.host));
  } else {
    const server = await startRedisServer();
    url = server.url;
    stop = server.stop;
    client = new Redis(url, { maxRetriesPerRequest: null });
    servers = [new Redis(url)];
  }
  const edge = client as unknown as RedisClient; // the Worker's functions; ioredis's Cluster speaks the same commands
  const node = await startNode({
    prefix, modelDir: await cachedTinyModel(), name: "bench-ops",
    env: { REDIS_URL: url, KV_CACHE_TOKENS: String(Math.max(8192, args.concurrency * args.n * (args.tokens + 64) * 2)) },
  });
  try {
    await Promise.all(servers.map((s) => s.config("RESETSTAT")));
    const started = performance.now();
    let next = 0;
    let generated = 0;
    const lane = async () => {
      while (next < args.requests) {
        next++;
        const id = newCompletionId();
        const request = chatRequest({ maxTokens: args.tokens, n: args.n, seed: String(next), temperature: 1 });
        const job = { protocol: PROTOCOL_VERSION, id, created: Math.floor(Date.now() / 1000), enqueuedAt: Date.now(), request, cacheSalt: "0123456789abcdef" };
        const limits = { rpm: 1e9, tpm: 1e12, concurrent: 1e6 };
        const admission = await admitAndEnqueue(edge, keys, {
          keyHash: "bench-key", limits, job, estimatedTokens: args.tokens * args.n + 32, maxQueueDepth: 1e6, leaseMs: CONCURRENCY_LEASE_MS,
          meta: { ownerKeyHash: "bench-key", model: request.model, created: job.created, n: args.n, logprobs: false, includeUsage: false },
        });
        const reader = new StreamReader(edge, keys.stream(id));
        let completion = 0;
        for (let done = false; !done;) {
          for (const { event } of await reader.read(1000)) {
            if (event.type === "done") {
              completion = event.usage.completionTokens;
              done = true;
            } else if (event.type === "error") throw new Error(`request failed: ${event.message}`);
          }
        }
        generated += completion;
        await expireFinished(edge, keys, id);
        await release(edge, keys, "bench-key", id, admission, completion);
      }
    };
    await Promise.all(Array.from({ length: args.concurrency }, lane));
    const seconds = (performance.now() - started) / 1000;
    const stats = [...(await commandStats(servers)).entries()].filter(([name]) => name !== "config" && name !== "info").sort((a, b) => b[1].calls - a[1].calls);
    const totalCalls = stats.reduce((s, [, c]) => s + c.calls, 0);
    const totalUsec = stats.reduce((s, [, c]) => s + c.usec, 0);
    const result = {
      cluster: args.cluster, requests: args.requests, tokensPerChoice: args.tokens, n: args.n, concurrency: args.concurrency,
      seconds: Number(seconds.toFixed(2)), generatedTokens: generated,
      commandsPerToken: Number((totalCalls / generated).toFixed(3)),
      commandsPerRequest: Number((totalCalls / args.requests).toFixed(1)),
      redisUsecPerToken: Number((totalUsec / generated).toFixed(2)),
      redisUsecPerRequest: Number((totalUsec / args.requests).toFixed(1)),
      commands: Object.fromEntries(stats.map(([name, s]) => [name, { calls: s.calls, perRequest: Number((s.calls / args.requests).toFixed(2)), usecPerCall: Number((s.usec / Math.max(1, s.calls)).toFixed(2)) }])),
    };
    if (args.json) process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    else {
      say(`${args.requests} requests × ${args.n} × ${args.tokens} tokens at concurrency ${args.concurrency}${args.cluster ? " on a 3-master cluster" : ""}: ${generated} tokens in ${seconds.toFixed(1)} s`);
      say(`Redis: ${result.commandsPerToken} commands and ${result.redisUsecPerToken} µs CPU per generated token; ${result.commandsPerRequest} commands and ${result.redisUsecPerRequest} µs per request`);
      for (const [name, s] of stats) say(`  ${name.padEnd(22)} ${String(s.calls).padStart(8)} calls  ${(s.calls / args.requests).toFixed(2).padStart(8)}/request  ${(s.usec / Math.max(1, s.calls)).toFixed(2).padStart(7)} µs/call`);
    }
  } finally {
    await node.stop();
    client.disconnect();
    for (const s of servers) s.disconnect();
    await stop();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:redis-ops: ${err.message}\n`);
  process.exit(1);
});
