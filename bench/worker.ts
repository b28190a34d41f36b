/**
 * `npm run bench:worker [-- --json] [--requests N] [--concurrency C] [--chunks M]`
 *
 * The edge Worker under `wrangler dev` on loopback, against the local Redis (127.0.0.1:6379):
 *  1. per-request Redis connection cost inside workerd (GET /health's Server-Timing: connect, ping, close);
 *  2. the auth + validate + admit + enqueue path: requests/s and p50/p99 latency to the response
 *     headers of a streaming request (SSE_HOLD_MS=0, so headers leave right after the enqueue; the
 *     bench then plays the node, appending start + done, and reads the stream to its end);
 *  3. the relay's added latency per chunk: XADD of one delta → its SSE chunk at the client, one at a
 *     time, against a plain XREAD BLOCK reader in this process on the same Redis (the floor).
 * Bounded (fixed counts, timeouts), loopback only; the bench's keys live under a unique prefix and are
 * deleted at the end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createParser } from "eventsource-parser";
import Redis from "ioredis";
import { encodeStreamEvent, type StreamEvent } from "../shared/protocol.ts";
import { keyPatterns, redisKeys } from "../shared/redis-keys.ts";

interface Options { json: boolean; requests: number; concurrency: number; chunks: number; port: number }

function parseOptions(argv: string[]): Options {
  const o: Options = { json: false, requests: 400, concurrency: 8, chunks: 200, port: 8790 + Math.floor(Math.random() * 200) };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => { const v = Number(argv[++i]); if (!Number.isInteger(v) || v <= 0) throw new Error(`${a} takes a positive integer`); return v; };
    if (a === "--json") o.json = true;
    else if (a === "--requests") o.requests = num();
    else if (a === "--concurrency") o.concurrency = num();
    else if (a === "--chunks") o.chunks = num();
    else if (a === "--port") o.port = num();
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
function summary(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 0.5), p99: percentile(s, 0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startWranglerDev(o: Options, prefix: string, devKey: string, stateDir: string): Promise<ChildProcess> {
  const bin = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
  const vars = { LOCAL_DEVELOPMENT: "true", DEV_API_KEY: devKey, REDIS_PREFIX: prefix, SSE_HOLD_MS: "0", HEALTH_CACHE_MS: "0", RATE_LIMIT_RPM: "1000000", RATE_LIMIT_TPM: "1000000000", RATE_LIMIT_CONCURRENT: "10000", MAX_QUEUE_DEPTH: "1000000" };
  const args = [bin, "dev", "--ip", "127.0.0.1", "--port", String(o.port), "--persist-to", stateDir, "--show-interactive-dev-session=false", "--log-level", "warn"];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], detached: true, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  let stderr = "";
  child.stderr!.on("data", (d) => { stderr += String(d); });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited:\n${stderr}`);
    try {
      if ((await fetch(`http://127.0.0.1:${o.port}/health`)).ok) return child;
    } catch { /* not up yet */ }
    await sleep(250);
  }
  throw new Error(`wrangler dev did not come up on port ${o.port}:\n${stderr}`);
}

function stopWranglerDev(child: ChildProcess): void {
  // Our own child's process group only (wrangler starts workerd under it).
  if (child.pid !== undefined && child.exitCode === null) {
    try { process.kill(-child.pid, "SIGTERM"); } catch { /* gone */ }
  }
}

async function measureHealth(base: string, rounds: number) {
  const parts: Record<string, number[]> = { connect: [], ping: [], close: [], total: [] };
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const res = await fetch(`${base}/health`);
    await res.arrayBuffer();
    parts.total.push(performance.now() - t0);
    for (const m of (res.headers.get("server-timing") ?? "").matchAll(/(\w+);dur=([\d.]+)/g)) parts[m[1]]?.push(Number(m[2]));
  }
  return Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, summary(v)]));
}

async function measureAdmission(base: string, devKey: string, redis: Redis, prefix: string, total: number, concurrency: number) {
  const keys = redisKeys(prefix);
  const body = JSON.stringify({ model: "microsoft/phi-4", messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Say hello in five words." }], stream: true, max_tokens: 32, temperature: 0.7 });
  const latencies: number[] = [];
  let failures = 0;
  let next = 0;
  const one = async () => {
    const t0 = performance.now();
    const res = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${devKey}`, "content-type": "application/json" }, body });
    const t1 = performance.now();
    const id = res.headers.get("x-request-id");
    if (res.status !== 200 || !id) { failures++; await res.arrayBuffer(); return; }
    latencies.push(t1 - t0);
    // Play the node so the stream ends (and the Worker releases the request).
    const start: StreamEvent = { type: "start", promptTokens: 20, n: 1, seed: "1", node: "bench" };
    const done: StreamEvent = { type: "done", finishReasons: ["stop"], usage: { promptTokens: 20, completionTokens: 0 } };
    await redis.multi().xadd(keys.stream(id), "*", ...encodeStreamEvent(start)).xadd(keys.stream(id), "*", ...encodeStreamEvent(done)).exec();
    await res.arrayBuffer();
  };
  const worker = async () => { while (next < total) { next++; await one(); } };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  return { requests: total, concurrency, failures, requestsPerSecond: (total - failures) / seconds, latencyMs: summary(latencies) };
}

/** Sequential deltas: publish one, wait for the reader to see it, publish the next. */
async function measurePerChunk(publish: (i: number) => Promise<void>, seen: (i: number) => Promise<void>, chunks: number) {
  const latencies: number[] = [];
  for (let i = 0; i < chunks; i++) {
    const t0 = performance.now();
    await publish(i);
    await seen(i);
    latencies.push(performance.now() - t0);
  }
  return summary(latencies.slice(Math.min(10, Math.floor(chunks / 10)))); // drop the warm-up
}

/** Resolves waiters as numbered chunk texts ("c<i>") arrive. */
class Arrivals {
  private count = 0;
  private waiters = new Map<number, () => void>();
  arrived(i: number) { this.count = Math.max(this.count, i + 1); this.waiters.get(i)?.(); this.waiters.delete(i); }
  wait(i: number, timeoutMs = 5000): Promise<void> {
    if (i < this.count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`chunk ${i} never arrived`)), timeoutMs);
      this.waiters.set(i, () => { clearTimeout(timer); resolve(); });
    });
  }
}

async function measureRelay(base: string, devKey: string, redis: Redis, prefix: string, chunks: number) {
  const keys = redisKeys(prefix);
  const delta = (i: number): StreamEvent => ({ type: "delta", index: 0, text: `c${i}`, tokens: [i] });

  // Through the Worker: one streaming completion whose deltas the bench appends one by one.
  const res = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${devKey}`, "content-type": "application/json" }, body: JSON.stringify({ model: "microsoft/phi-4", messages: [{ role: "user", content: "count" }], stream: true }) });
  const id = res.headers.get("x-request-id")!;
  await redis.xadd(keys.stream(id), "*", ...encodeStreamEvent({ type: "start", promptTokens: 2, n: 1, seed: "1", node: "bench" }));
  const sse = new Arrivals();
  const parser = createParser({ onEvent: (e) => {
    if (e.data === "[DONE]") return;
    const text = JSON.parse(e.data).choices[0]?.delta?.content as string | undefined;
    if (text?.startsWith("c")) sse.arrived(Number(text.slice(1)));
  } });
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const part of res.body!) parser.feed(decoder.decode(part as Uint8Array, { stream: true }));
  })();
  const relay = await measurePerChunk((i) => redis.xadd(keys.stream(id), "*", ...encodeStreamEvent(delta(i))).then(() => {}), (i) => sse.wait(i), chunks);
  await redis.xadd(keys.stream(id), "*", ...encodeStreamEvent({ type: "done", finishReasons: ["stop"], usage: { promptTokens: 2, completionTokens: chunks } }));
  await reading;

  // The floor: a blocking XREAD reader on the same Redis, in this process.
  const floorStream = `${prefix}:bench:floor`;
  const reader = new Redis("redis://127.0.0.1:6379");
  const direct = new Arrivals();
  let stop = false;
  const loop = (async () => {
    let cursor = "0-0";
    while (!stop) {
      const reply = await reader.xread("BLOCK", 200, "STREAMS", floorStream, cursor);
      for (const [, entries] of reply ?? []) {
        for (const [entryId, fields] of entries) {
          cursor = entryId;
          direct.arrived(Number(JSON.parse(fields[3]).text.slice(1)));
        }
      }
    }
  })();
  const floor = await measurePerChunk((i) => redis.xadd(floorStream, "*", ...encodeStreamEvent(delta(i))).then(() => {}), (i) => direct.wait(i), chunks);
  stop = true;
  await loop;
  reader.disconnect();
  return { chunks, throughWorkerMs: relay, directXreadMs: floor, addedP50Ms: relay.p50 - floor.p50, addedP99Ms: relay.p99 - floor.p99 };
}

async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  for (const pattern of keyPatterns(prefix)) {
    let cursor = "0";
    do {
      const [next, found] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      if (found.length) await redis.del(...found);
      cursor = next;
    } while (cursor !== "0");
  }
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const prefix = `phi4bench-${Date.now().toString(36)}`;
  const devKey = `sk-bench-${crypto.randomUUID()}`;
  const stateDir = mkdtempSync(join(tmpdir(), "phi4-bench-wrangler-"));
  const redis = new Redis("redis://127.0.0.1:6379", { commandTimeout: 5000 });
  const base = `http://127.0.0.1:${o.port}`;
  const child = await startWranglerDev(o, prefix, devKey, stateDir);
  try {
    // The bench plays the GPU node: announce one, or the edge answers 503 no_capacity.
    await redis.zadd(redisKeys(prefix).nodes, Date.now() + 3_600_000, "bench-node");
    await measureAdmission(base, devKey, redis, prefix, 30, 2); // warm-up
    const health = await measureHealth(base, 100);
    const admission1 = await measureAdmission(base, devKey, redis, prefix, Math.max(50, Math.floor(o.requests / 4)), 1);
    const admission = await measureAdmission(base, devKey, redis, prefix, o.requests, o.concurrency);
    const relay = await measureRelay(base, devKey, redis, prefix, o.chunks);
    const result = { redisConnection: "per request", machine: "node-svc, 2 cores", runtime: "wrangler dev 4.86 (workerd), loopback, Redis 127.0.0.1:6379", health, admission: [admission1, admission], relay };
    if (o.json) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      const f = (x: number) => x.toFixed(2);
      console.log(`Redis connection: ${result.redisConnection}\n`);
      console.log("per-request Redis connection inside workerd (GET /health, ms)");
      console.log("  part     p50     p99");
      for (const [part, s] of Object.entries(health)) console.log(`  ${part.padEnd(8)} ${f(s.p50).padStart(6)}  ${f(s.p99).padStart(6)}`);
      console.log("\nauth + validate + admit + enqueue (POST stream:true → response headers)");
      console.log("  concurrency  requests  failures  req/s    p50 ms  p99 ms");
      for (const a of [admission1, admission]) {
        console.log(`  ${String(a.concurrency).padEnd(11)}  ${String(a.requests).padEnd(8)}  ${String(a.failures).padEnd(8)}  ${a.requestsPerSecond.toFixed(1).padEnd(7)}  ${f(a.latencyMs.p50).padStart(6)}  ${f(a.latencyMs.p99).padStart(6)}`);
      }
      console.log(`\nrelay, per chunk (XADD → SSE chunk at the client), ${relay.chunks} chunks`);
      console.log(`  through the Worker   p50 ${f(relay.throughWorkerMs.p50)} ms  p99 ${f(relay.throughWorkerMs.p99)} ms`);
      console.log(`  direct XREAD floor   p50 ${f(relay.directXreadMs.p50)} ms  p99 ${f(relay.directXreadMs.p99)} ms`);
      console.log(`  added by the relay   p50 ${f(relay.addedP50Ms)} ms  p99 ${f(relay.addedP99Ms)} ms`);
    }
  } finally {
    stopWranglerDev(child);
    await deletePrefix(redis, prefix);
    redis.disconnect();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
