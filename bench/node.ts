/**
 * `npm run bench:node [-- --json] [--model DIR] [--pickups N] [--streams N] [--tokens N] [--threads N]`
 * (--threads: the node's INTRA_OP_THREADS; default: onnxruntime's choice)
 *
 * One real GPU node process (`gpu-node/service/main.ts`, tiny model unless --model), real Redis on
 * loopback, jobs enqueued with BullMQ exactly as the Worker enqueues them.
 *  - Queue pickup latency, node idle: enqueue one job (max_tokens 1), time from just before
 *    `queue.add` to the `start` entry appearing in the request's stream (blocking XREAD); the next job
 *    goes only after the previous one's `done`. p50/p99 over --pickups jobs.
 *  - Publishing cost at --streams concurrent streams: the node's own counters over the run
 *    (/metrics): time from sending a step's pipeline to Redis's reply, summed, per generated token and
 *    as a share of engine step time. Wall time, so it counts the Redis round trip; the engine thread
 *    does not wait for it (publishing runs on the host thread), so the share is an upper bound on
 *    what publishing could take from generation.
 */
import { parseArgs } from "node:util";
import { chatJob, TestWorker, uniquePrefix } from "../stack/chat-jobs.ts";
import { startNode } from "../stack/node-process.ts";
import { parseMetric } from "../stack/stack-process.ts";
import { cachedTinyModel } from "../gpu-node/model/tiny-model.ts";

interface Args {
  json: boolean;
  model: string | null;
  pickups: number;
  streams: number;
  tokens: number;
  threads: string;
}

function parse(): Args {
  const { values } = parseArgs({
    options: {
      json: { type: "boolean", default: false },
      model: { type: "string" },
      pickups: { type: "string", default: "200" },
      streams: { type: "string", default: "32" },
      tokens: { type: "string", default: "64" },
      threads: { type: "string", default: "" },
    },
  });
  const int = (name: string, v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) {
      process.stderr.write(`bench:node: --${name} must be a positive integer, got ${JSON.stringify(v)}\n`);
      process.exit(2);
    }
    return Number(v);
  };
  return { json: values.json!, model: values.model ?? null, pickups: int("pickups", values.pickups!), streams: int("streams", values.streams!), tokens: int("tokens", values.tokens!), threads: values.threads === "" ? "" : String(int("threads", values.threads!)) };
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

async function main(): Promise<void> {
  const args = parse();
  const say = (line: string) => !args.json && process.stderr.write(line + "\n");
  const modelDir = args.model ?? (await cachedTinyModel());
  const worker = new TestWorker(uniquePrefix("bench-node"));
  const kvCacheTokens = String(Math.max(8192, args.streams * (args.tokens + 64) * 2));
  const node = await startNode({
    prefix: worker.prefix, modelDir, name: "bench-node",
    env: { MAX_BATCH: String(Math.max(32, args.streams)), KV_CACHE_TOKENS: kvCacheTokens, INTRA_OP_THREADS: args.threads },
  });
  const reader = worker.redis.duplicate();
  try {
    // 1. Pickup latency, idle node.
    say(`pickup latency: ${args.pickups} jobs, one at a time`);
    const pickupMs: number[] = [];
    for (let i = 0; i < args.pickups + 5; i++) {
      const job = chatJob({ maxTokens: 1, messages: [{ role: "user", content: `ping ${i}` }] });
      const t0 = performance.now();
      await worker.enqueue(job);
      const reply = await reader.xread("BLOCK", 10_000, "STREAMS", worker.keys.stream(job.id), "0-0");
      const t1 = performance.now();
      if (!reply) throw new Error(`no start for ${job.id} within 10 s`);
      if (i >= 5) pickupMs.push(t1 - t0); // the first few warm connections and scripts
      await worker.waitForEnd(job.id);
    }
    pickupMs.sort((a, b) => a - b);

    // 2. Publishing cost at N concurrent streams.
    say(`publishing: ${args.streams} concurrent streams x ${args.tokens} tokens`);
    const before = (await node.get("/metrics")).body;
    const jobs = Array.from({ length: args.streams }, (_, i) => chatJob({ maxTokens: args.tokens, messages: [{ role: "user", content: `stream ${i}` }] }));
    const t0 = performance.now();
    await Promise.all(jobs.map((job) => worker.enqueue(job)));
    await Promise.all(jobs.map((job) => worker.waitForEnd(job.id, 600_000)));
    const wallSec = (performance.now() - t0) / 1000;
    const after = (await node.get("/metrics")).body;
    const delta = (name: string) => parseMetric(after, name) - parseMetric(before, name);
    const publishSec = delta("phi4_stream_publish_seconds_sum");
    const publishHostSec = delta("phi4_stream_publish_host_seconds_total");
    const flushes = delta("phi4_stream_publish_seconds_count");
    const stepSec = delta("phi4_engine_step_seconds_total");
    const steps = delta("phi4_engine_steps_total");
    const tokens = delta("phi4_generation_tokens_total");

    const figures = {
      machine: "node-svc, 2 cores",
      model: args.model ?? "tiny (seed 0)",
      intraOpThreads: args.threads || "onnxruntime default",
      pickup: { jobs: pickupMs.length, p50Ms: quantile(pickupMs, 0.5), p99Ms: quantile(pickupMs, 0.99), maxMs: pickupMs.at(-1)! },
      publishing: {
        streams: args.streams,
        tokensPerStream: args.tokens,
        generatedTokens: tokens,
        steps,
        pipelines: flushes,
        stepMsPerStep: (stepSec * 1000) / steps,
        publishMsPerPipeline: (publishSec * 1000) / flushes,
        publishUsPerToken: (publishSec * 1e6) / tokens,
        stepUsPerToken: (stepSec * 1e6) / tokens,
        publishShareOfStepTime: publishSec / stepSec,
        publishHostUsPerToken: (publishHostSec * 1e6) / tokens,
        publishHostShareOfStepTime: publishHostSec / stepSec,
        tokensPerSec: tokens / wallSec,
      },
    };
    if (args.json) {
      process.stdout.write(JSON.stringify(figures, null, 2) + "\n");
    } else {
      const p = figures.publishing;
      const rows: Array<[string, string, string]> = [
        ["queue pickup p50 (idle, enqueue → start)", `${figures.pickup.p50Ms.toFixed(2)} ms`, "< 10 ms"],
        ["queue pickup p99", `${figures.pickup.p99Ms.toFixed(2)} ms`, ""],
        [`engine step at ${p.streams} streams`, `${p.stepMsPerStep.toFixed(2)} ms`, ""],
        ["publish pipeline (send → reply)", `${p.publishMsPerPipeline.toFixed(3)} ms`, ""],
        ["publish cost per token", `${p.publishUsPerToken.toFixed(1)} µs`, ""],
        ["step time per token", `${p.stepUsPerToken.toFixed(1)} µs`, ""],
        ["publish share of step time (wall, send → reply)", `${(p.publishShareOfStepTime * 100).toFixed(2)} %`, "< 5 %"],
        ["publish host-thread time per token", `${p.publishHostUsPerToken.toFixed(1)} µs`, ""],
        ["publish host-thread share of step time", `${(p.publishHostShareOfStepTime * 100).toFixed(2)} %`, "< 5 %"],
        ["throughput", `${p.tokensPerSec.toFixed(0)} tok/s`, ""],
      ];
      const w0 = Math.max(...rows.map((r) => r[0].length));
      const w1 = Math.max(...rows.map((r) => r[1].length));
      process.stdout.write(`bench:node — ${figures.machine}, model ${figures.model}, ${figures.pickup.jobs} pickups, ${p.streams} streams x ${p.tokensPerStream} tokens\n`);
      for (const [a, b, c] of rows) process.stdout.write(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}\n`);
    }
  } finally {
    reader.disconnect();
    node.child.kill("SIGTERM");
    await node.exited;
    await worker.cleanup();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:node: ${err.message}\n`);
  process.exit(1);
});
