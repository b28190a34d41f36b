/**
 * `npm run bench:e2e [-- --json] [--quick] [--url URL --key KEY] [--nodes N] [--out DIR]
 *                     [--levels 1,2,4] [--requests N] [--max-seconds S] [--seed N] [--machine LABEL]`
 * `npm run bench:e2e -- --replot [--out DIR]` redraws DIR/chart.svg from DIR/results.json without running.
 *
 * Load on the whole stack through the official `openai` SDK, in the manner of vLLM's serving benchmark:
 * a concurrency sweep where each level keeps exactly `concurrency` streaming requests in flight until
 * its fixed number of requests — max(--requests, 3 × concurrency) — has been sent. The workload is one
 * seeded sequence of chat requests (a mix of short and long user messages, a mix of max_tokens; the
 * end-of-turn ids banned with logit_bias so each request generates its max_tokens, like vLLM's
 * ignore_eos); every level serves a prefix of that sequence, so levels differ only in concurrency.
 *
 * Per request: TTFT = send → first chunk with content; ITL = gaps between content chunks; E2E = send →
 * end of stream; output tokens from the usage chunk (stream_options.include_usage). TPOT = (E2E − TTFT)
 * ÷ (output tokens − 1). Per level: p50/p90/p99 (linear interpolation) over successful requests, and
 * requests/s and output tokens/s over the level's wall time (first send → last stream end).
 *
 * By default it starts its own stack (stack/stack-process.ts: `npm start` on free ports, GPU_NODES
 * = --nodes, the seeded tiny model) and stops it at the end; --url/--key target a running one. Loopback
 * only. Bounded: the SDK does not retry, each request has a timeout, and the sweep stops at --max-seconds
 * (in-flight requests are aborted and the level is marked truncated).
 * Writes results.json and chart.svg into --out (default bench/results/), prints a table (or, with --json,
 * the results object) on stdout; the progress bar goes to stderr.
 */
import { setMaxListeners } from "node:events";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Presets, SingleBar } from "cli-progress";
import OpenAI from "openai";
import { cachedTinyModel } from "../gpu-node/model/tiny-model.ts";
import { PHI4_CONFIG } from "../gpu-node/model/phi3-config.ts";
import { SERVED_MODEL_ID } from "../shared/limits.ts";
import { seededUniform } from "../shared/seeded-uniform.ts";
import { metric, startStack, type Stack } from "../stack/stack-process.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REQUEST_TIMEOUT_MS = 120_000;
const WAVES_PER_LEVEL = 3;

// ───────────────────────────── options ─────────────────────────────

interface Options {
  json: boolean;
  quick: boolean;
  replot: boolean;
  url: string | null;
  key: string | null;
  nodes: number;
  outDir: string;
  levels: number[];
  minRequests: number;
  maxSeconds: number;
  seed: number;
  machine: string;
}

function usageError(message: string): never {
  process.stderr.write(`bench:e2e: ${message}\n`);
  process.exit(2);
}

function positiveInt(name: string, raw: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) < 1) usageError(`--${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function parseOptions(): Options {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      json: { type: "boolean", default: false },
      quick: { type: "boolean", default: false },
      replot: { type: "boolean", default: false },
      url: { type: "string" },
      key: { type: "string" },
      nodes: { type: "string", default: "1" },
      out: { type: "string" },
      levels: { type: "string" },
      requests: { type: "string" },
      "max-seconds": { type: "string" },
      seed: { type: "string", default: "1" },
      machine: { type: "string" },
    },
  });
  const quick = values.quick!;
  const url = values.url ?? null;
  const key = values.key ?? null;
  if ((url === null) !== (key === null)) usageError("--url and --key go together");
  if (url !== null) {
    let host: string;
    try {
      host = new URL(url).hostname;
    } catch {
      usageError(`--url is not a URL: ${JSON.stringify(url)}`);
    }
    // A load generator pointed at someone else's server is an attack, not a benchmark.
    if (!["127.0.0.1", "localhost", "[::1]"].includes(host)) usageError(`--url must be on loopback (127.0.0.1, localhost, [::1]), got ${host}`);
  }
  const levels = (values.levels ?? (quick ? "1,4,16" : "1,2,4,8,16,32")).split(",").map((s) => positiveInt("levels", s.trim()));
  return {
    json: values.json!,
    quick,
    replot: values.replot!,
    url,
    key,
    nodes: positiveInt("nodes", values.nodes!),
    outDir: values.out ? path.resolve(values.out) : path.join(repoRoot, "bench", "results"),
    levels,
    minRequests: positiveInt("requests", values.requests ?? (quick ? "8" : "32")),
    maxSeconds: positiveInt("max-seconds", values["max-seconds"] ?? (quick ? "150" : "600")),
    seed: positiveInt("seed", values.seed!),
    machine: values.machine ?? `${os.hostname()}, ${os.cpus().length} cores`,
  };
}

// ───────────────────────────── workload ─────────────────────────────

const WORDS = (
  "the model serves requests from many users at once and every answer streams back token by token " +
  "while the scheduler admits new sequences between decode steps so nobody waits for a batch to drain " +
  "please summarize explain compare describe translate list outline why how what when which river mountain " +
  "history science garden kitchen recipe travel weather music engine market language library ocean planet " +
  "careful brief detailed simple formal friendly story poem letter report table plan question answer"
).split(" ");

interface WorkloadShape {
  /** Share of requests with a long user message. */
  longShare: number;
  shortWords: [number, number];
  longWords: [number, number];
  /** Share of requests asking for a long completion. */
  longOutputShare: number;
  shortMaxTokens: [number, number];
  longMaxTokens: [number, number];
}

const FULL_SHAPE: WorkloadShape = {
  longShare: 0.3, shortWords: [5, 60], longWords: [250, 1500],
  longOutputShare: 0.4, shortMaxTokens: [16, 64], longMaxTokens: [128, 256],
};
const QUICK_SHAPE: WorkloadShape = {
  longShare: 0.3, shortWords: [5, 40], longWords: [150, 600],
  longOutputShare: 0.3, shortMaxTokens: [8, 32], longMaxTokens: [64, 128],
};

interface BenchRequest {
  index: number;
  userMessage: string;
  maxTokens: number;
  seed: number;
}

function buildWorkload(count: number, shape: WorkloadShape, seed: number): BenchRequest[] {
  const random = seededUniform(seed);
  const between = ([lo, hi]: [number, number]) => lo + Math.floor(random() * (hi - lo + 1));
  const requests: BenchRequest[] = [];
  for (let index = 0; index < count; index++) {
    const words = between(random() < shape.longShare ? shape.longWords : shape.shortWords);
    const parts = new Array<string>(words);
    for (let w = 0; w < words; w++) parts[w] = WORDS[Math.floor(random() * WORDS.length)];
    const maxTokens = between(random() < shape.longOutputShare ? shape.longMaxTokens : shape.shortMaxTokens);
    requests.push({ index, userMessage: `Request ${index}: ${parts.join(" ")}.`, maxTokens, seed: seed * 100_003 + index });
  }
  return requests;
}

/** Bans end-of-turn so a request generates its whole max_tokens (vLLM's ignore_eos, through the public API). */
const NO_EOS_BIAS: Record<string, number> = Object.fromEntries(PHI4_CONFIG.eosTokenIds.map((id) => [String(id), -100]));

// ───────────────────────────── one request ─────────────────────────────

interface RequestOutcome {
  ok: boolean;
  error: string | null;
  promptTokens: number;
  outputTokens: number;
  maxTokens: number;
  ttftMs: number;
  e2eMs: number;
  /** Gaps between consecutive content chunks, ms. */
  itlMs: number[];
}

async function sendStreaming(client: OpenAI, request: BenchRequest, signal: AbortSignal): Promise<RequestOutcome> {
  const outcome: RequestOutcome = { ok: false, error: null, promptTokens: 0, outputTokens: 0, maxTokens: request.maxTokens, ttftMs: NaN, e2eMs: NaN, itlMs: [] };
  const sentAt = performance.now();
  let lastContentAt = NaN;
  let sawUsage = false;
  let finishReason: string | null = null;
  try {
    const stream = await client.chat.completions.create({
      model: SERVED_MODEL_ID,
      messages: [{ role: "user", content: request.userMessage }],
      max_tokens: request.maxTokens,
      seed: request.seed,
      logit_bias: NO_EOS_BIAS,
      stream: true,
      stream_options: { include_usage: true },
    }, { signal });
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta?.content;
      if (content) {
        const now = performance.now();
        if (Number.isNaN(lastContentAt)) outcome.ttftMs = now - sentAt;
        else outcome.itlMs.push(now - lastContentAt);
        lastContentAt = now;
      }
      finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
      if (chunk.usage) {
        sawUsage = true;
        outcome.promptTokens = chunk.usage.prompt_tokens;
        outcome.outputTokens = chunk.usage.completion_tokens;
      }
    }
    outcome.e2eMs = performance.now() - sentAt;
    // The SDK ends an aborted stream's iteration quietly, so ask the signal.
    if (signal.aborted) outcome.error = abortReason(signal);
    else if (!sawUsage) outcome.error = `stream ended without usage (finish_reason ${finishReason ?? "none"})`;
    else if (Number.isNaN(outcome.ttftMs)) outcome.error = "no content";
    else outcome.ok = true;
  } catch (err) {
    outcome.error = describeError(err, signal);
  }
  return outcome;
}

function abortReason(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === "TimeoutError") return "aborted (time cap)";
  return `aborted (${reason instanceof Error ? reason.message : String(reason)})`;
}

function describeError(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return abortReason(signal);
  if (err instanceof OpenAI.APIError && err.status !== undefined) return `${err.status} ${err.code ?? err.type ?? err.message.slice(0, 80)}`;
  if (err instanceof OpenAI.APIConnectionTimeoutError) return "timeout";
  if (err instanceof Error) {
    // undici reports a dropped connection as TypeError("terminated") with the socket error as its cause.
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : "";
    return `${err.name === "Error" ? "" : `${err.name}: `}${err.message}${cause}`.slice(0, 120);
  }
  return String(err);
}

// ───────────────────────────── statistics ─────────────────────────────

interface Distribution {
  mean: number | null;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

/** Percentiles by linear interpolation between closest ranks (numpy's default, as vLLM reports them). */
function distribution(samples: ArrayLike<number>): Distribution {
  const n = samples.length;
  if (n === 0) return { mean: null, p50: null, p90: null, p99: null, max: null };
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  const at = (q: number) => {
    const rank = q * (n - 1);
    const lo = Math.floor(rank);
    const hi = Math.min(n - 1, lo + 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
  };
  return { mean: sum / n, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[n - 1] };
}

interface LevelResult {
  concurrency: number;
  requests: number;
  completed: number;
  failed: number;
  /** Failed requests by reason. */
  errors: Record<string, number>;
  /** The time cap ended this level early. */
  truncated: boolean;
  /** Successful requests that generated fewer tokens than their max_tokens (should be 0: end-of-turn is banned). */
  shortOfMaxTokens: number;
  durationS: number;
  requestsPerS: number;
  outputTokensPerS: number;
  inputTokensPerS: number;
  totalInputTokens: number;
  totalOutputTokens: number;
  ttftMs: Distribution;
  itlMs: Distribution;
  tpotMs: Distribution;
  e2eMs: Distribution;
  /** CPU time of this load generator ÷ wall time (1 = one core): on a small machine it competes with the stack. */
  clientCpuShare: number;
  /** From the GPU nodes' /metrics over the level; null when targeting --url (no metrics address known). */
  server: ServerView | null;
}

interface ServerView {
  /** Time inside engine steps ÷ wall time, summed over nodes (1 = one node stepping all the time). */
  engineBusyShare: number;
  engineSteps: number;
  /** Tokens generated per engine step: the mean decode batch, roughly. */
  tokensPerStep: number;
  preemptions: number;
}

const SERVER_COUNTERS = ["phi4_engine_steps_total", "phi4_engine_step_seconds_total", "phi4_generation_tokens_total", "phi4_preemptions_total"] as const;

async function readServerCounters(stack: Stack): Promise<number[]> {
  const totals = SERVER_COUNTERS.map(() => 0);
  for (const node of stack.nodes) {
    for (let i = 0; i < SERVER_COUNTERS.length; i++) totals[i] += await metric(node.metrics, SERVER_COUNTERS[i]);
  }
  return totals;
}

function serverView(before: number[], after: number[], wallS: number): ServerView {
  const [steps, stepS, tokens, preemptions] = after.map((v, i) => v - before[i]);
  return { engineBusyShare: stepS / wallS, engineSteps: steps, tokensPerStep: steps > 0 ? tokens / steps : 0, preemptions };
}

function summarizeLevel(concurrency: number, requests: number, outcomes: RequestOutcome[], durationS: number, truncated: boolean): LevelResult {
  const ok = outcomes.filter((o) => o.ok);
  const errors: Record<string, number> = {};
  for (const o of outcomes) if (!o.ok) errors[o.error!] = (errors[o.error!] ?? 0) + 1;
  let itlCount = 0;
  for (const o of ok) itlCount += o.itlMs.length;
  const itl = new Float64Array(itlCount);
  let at = 0;
  for (const o of ok) for (const gap of o.itlMs) itl[at++] = gap;
  const tpot = ok.filter((o) => o.outputTokens > 1).map((o) => (o.e2eMs - o.ttftMs) / (o.outputTokens - 1));
  const totalInputTokens = ok.reduce((s, o) => s + o.promptTokens, 0);
  const totalOutputTokens = ok.reduce((s, o) => s + o.outputTokens, 0);
  return {
    concurrency,
    requests,
    completed: ok.length,
    failed: requests - ok.length,
    errors,
    truncated,
    shortOfMaxTokens: ok.filter((o) => o.outputTokens < o.maxTokens).length,
    durationS,
    requestsPerS: ok.length / durationS,
    outputTokensPerS: totalOutputTokens / durationS,
    inputTokensPerS: totalInputTokens / durationS,
    totalInputTokens,
    totalOutputTokens,
    ttftMs: distribution(ok.map((o) => o.ttftMs)),
    itlMs: distribution(itl),
    tpotMs: distribution(tpot),
    e2eMs: distribution(ok.map((o) => o.e2eMs)),
    clientCpuShare: 0,
    server: null,
  };
}

// ───────────────────────────── one level ─────────────────────────────

/** Keeps `concurrency` requests in flight until every request of the level has been sent and answered. */
async function runLevel(
  client: OpenAI, requests: BenchRequest[], concurrency: number, stop: AbortSignal,
  promptTokensSeen: Int32Array,
): Promise<LevelResult> {
  const bar = new SingleBar({
    stream: process.stderr,
    format: `concurrency {concurrency} |{bar}| {value}/{total} requests | {tokensPerS} output tok/s | {failed} failed | {duration_formatted}`,
    hideCursor: true,
  }, Presets.shades_classic);
  bar.start(requests.length, 0, { concurrency: String(concurrency).padStart(2), tokensPerS: "0", failed: 0 });
  const outcomes: RequestOutcome[] = [];
  let next = 0;
  let outputTokens = 0;
  let failed = 0;
  const startedAt = performance.now();
  const lane = async () => {
    while (!stop.aborted && next < requests.length) {
      const request = requests[next++];
      const outcome = await sendStreaming(client, request, stop);
      outcomes.push(outcome);
      if (outcome.ok) {
        outputTokens += outcome.outputTokens;
        promptTokensSeen[request.index] = outcome.promptTokens;
      } else failed++;
      const seconds = (performance.now() - startedAt) / 1000;
      bar.increment(1, { tokensPerS: (outputTokens / seconds).toFixed(0), failed });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, requests.length) }, lane));
  const durationS = (performance.now() - startedAt) / 1000;
  bar.stop();
  // Requests never sent because the sweep was stopped count as failed, so `requests` stays the plan.
  for (let i = outcomes.length; i < requests.length; i++) {
    outcomes.push({ ok: false, error: "not sent (stopped)", promptTokens: 0, outputTokens: 0, maxTokens: requests[i].maxTokens, ttftMs: NaN, e2eMs: NaN, itlMs: [] });
  }
  const level = summarizeLevel(concurrency, requests.length, outcomes, durationS, stop.aborted);
  // One line per level survives where the bar does not (stderr not a terminal, logs).
  process.stderr.write(`  concurrency ${concurrency}: ${level.completed}/${level.requests} ok in ${durationS.toFixed(1)} s, ` +
    `${level.outputTokensPerS.toFixed(0)} output tok/s, TTFT p50 ${fmt(level.ttftMs.p50)} ms\n`);
  return level;
}

// ───────────────────────────── the sweep ─────────────────────────────

interface BenchResults {
  benchmark: "bench:e2e";
  date: string;
  machine: string;
  node: string;
  command: string;
  target: { baseURL: string; startedStack: boolean; gpuNodes: number | null; model: string };
  workload: {
    seed: number;
    quick: boolean;
    requestsPerLevel: string;
    shape: WorkloadShape;
    promptTokens: Distribution;
    maxTokens: Distribution;
    ignoreEos: true;
    streaming: true;
  };
  limits: { maxSeconds: number; requestTimeoutMs: number; retries: 0 };
  durationS: number;
  /** 1-minute load average before and after the sweep: the build machines are shared. */
  loadAverage: { before: number; after: number };
  stoppedEarly: boolean;
  levels: LevelResult[];
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (options.replot) {
    const results = JSON.parse(await readFile(path.join(options.outDir, "results.json"), "utf8")) as BenchResults;
    await writeFile(path.join(options.outDir, "chart.svg"), renderChart(results));
    process.stderr.write(`redrew ${path.join(options.outDir, "chart.svg")}\n`);
    return;
  }
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const onSignal = () => interrupt.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  let stack: Stack | null = null;
  let baseURL = options.url;
  let apiKey = options.key;
  try {
    if (baseURL === null) {
      say(`starting the stack (${options.nodes} GPU node${options.nodes === 1 ? "" : "s"}, tiny model, wrangler dev)…`);
      stack = await startStack({ gpuNodes: options.nodes, extraEnv: { MODEL_DIR: await cachedTinyModel() } });
      baseURL = stack.baseURL;
      apiKey = stack.apiKey;
      say(`stack up at ${baseURL}`);
    }
    if (interrupt.signal.aborted) return;
    // No retries: a benchmark that retries hides the failures it should count.
    const client = new OpenAI({ baseURL, apiKey: apiKey!, maxRetries: 0, timeout: REQUEST_TIMEOUT_MS });

    const shape = options.quick ? QUICK_SHAPE : FULL_SHAPE;
    const perLevel = options.levels.map((c) => Math.max(options.minRequests, WAVES_PER_LEVEL * c));
    const workload = buildWorkload(Math.max(...perLevel), shape, options.seed);

    // Warm-up (not measured): the first request pays for connections, compiled scripts and lazy setup.
    const warmup = await sendStreaming(client, { index: -1, userMessage: "Warm-up.", maxTokens: 4, seed: 0 }, interrupt.signal);
    if (interrupt.signal.aborted) return;
    if (!warmup.ok) throw new Error(`the warm-up request failed: ${warmup.error}`);

    const deadline = AbortSignal.timeout(options.maxSeconds * 1000);
    const stop = AbortSignal.any([interrupt.signal, deadline]);
    // Every request in flight listens on it (up to the highest concurrency at once).
    setMaxListeners(0, stop, interrupt.signal);
    const sweepStart = performance.now();
    const loadBefore = os.loadavg()[0];
    const levels: LevelResult[] = [];
    // Prompt sizes as the server counted them (chat template included), from the usage chunks.
    const promptTokensSeen = new Int32Array(workload.length);
    for (let i = 0; i < options.levels.length && !stop.aborted; i++) {
      const countersBefore = stack ? await readServerCounters(stack) : null;
      const cpuBefore = process.cpuUsage();
      const level = await runLevel(client, workload.slice(0, perLevel[i]), options.levels[i], stop, promptTokensSeen);
      const cpu = process.cpuUsage(cpuBefore);
      level.clientCpuShare = (cpu.user + cpu.system) / 1e6 / level.durationS;
      if (stack && countersBefore) level.server = serverView(countersBefore, await readServerCounters(stack), level.durationS);
      levels.push(level);
    }

    const results: BenchResults = {
      benchmark: "bench:e2e",
      date: new Date().toISOString(),
      machine: options.machine,
      node: process.version,
      command: commandLine(),
      target: { baseURL: baseURL!, startedStack: stack !== null, gpuNodes: stack ? options.nodes : null, model: stack ? "tiny (seed 0, random weights)" : SERVED_MODEL_ID },
      workload: {
        seed: options.seed,
        quick: options.quick,
        requestsPerLevel: `max(${options.minRequests}, ${WAVES_PER_LEVEL} × concurrency)`,
        shape,
        promptTokens: distribution(promptTokensSeen.filter((n) => n > 0)),
        maxTokens: distribution(workload.map((r) => r.maxTokens)),
        ignoreEos: true,
        streaming: true,
      },
      limits: { maxSeconds: options.maxSeconds, requestTimeoutMs: REQUEST_TIMEOUT_MS, retries: 0 },
      durationS: (performance.now() - sweepStart) / 1000,
      loadAverage: { before: loadBefore, after: os.loadavg()[0] },
      stoppedEarly: stop.aborted,
      levels,
    };

    if (options.json) process.stdout.write(JSON.stringify(results, null, 2) + "\n");
    else process.stdout.write(renderTable(results));
    // An interrupted run is not a result: keep whatever --out already holds (bench/results is committed).
    if (interrupt.signal.aborted) {
      say(`interrupted: nothing written to ${options.outDir}`);
    } else {
      await mkdir(options.outDir, { recursive: true });
      await writeFile(path.join(options.outDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
      await writeFile(path.join(options.outDir, "chart.svg"), renderChart(results));
      say(`wrote ${path.join(options.outDir, "results.json")} and chart.svg`);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (stack) {
      say("stopping the stack…");
      await stack.stop();
    }
    if (interrupt.signal.aborted) process.exitCode = 130;
  }
}

/** How this run was invoked, with the API key's value left out (results are committed). */
function commandLine(): string {
  const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `"${arg.replace(/["\\$`]/g, "\\$&")}"`);
  const args = process.argv.slice(2).map((arg, i, all) => (all[i - 1] === "--key" ? "<key>" : quote(arg.replace(/^--key=.*/, "--key=<key>"))));
  return args.length ? `npm run bench:e2e -- ${args.join(" ")}` : "npm run bench:e2e";
}

// ───────────────────────────── table ─────────────────────────────

function fmt(v: number | null, digits = 0): string {
  return v === null ? "–" : v.toFixed(digits);
}

function renderTable(r: BenchResults): string {
  const header = ["conc", "ok/sent", "s", "req/s", "out tok/s", "TTFT p50/p90/p99 ms", "ITL p50/p90/p99 ms", "E2E p50/p90/p99 ms", "engine busy", "tok/step", "client CPU"];
  const triple = (d: Distribution, digits = 0) => `${fmt(d.p50, digits)} / ${fmt(d.p90, digits)} / ${fmt(d.p99, digits)}`;
  const rows = r.levels.map((l) => [
    String(l.concurrency) + (l.truncated ? "*" : ""),
    `${l.completed}/${l.requests}`,
    l.durationS.toFixed(1),
    l.requestsPerS.toFixed(2),
    l.outputTokensPerS.toFixed(0),
    triple(l.ttftMs),
    triple(l.itlMs, 1),
    triple(l.e2eMs),
    l.server ? `${(l.server.engineBusyShare * 100).toFixed(0)} %` : "–",
    l.server ? l.server.tokensPerStep.toFixed(1) : "–",
    `${(l.clientCpuShare * 100).toFixed(0)} %`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ") + "\n";
  let out = `bench:e2e — ${r.machine}, ${r.date.slice(0, 10)}, ${r.target.startedStack ? `${r.target.gpuNodes} GPU node(s), ${r.target.model}` : r.target.baseURL}, ` +
    `requests per level ${r.workload.requestsPerLevel}, streaming, load average ${r.loadAverage.before.toFixed(1)} → ${r.loadAverage.after.toFixed(1)}\n`;
  out += line(header);
  out += line(widths.map((w) => "-".repeat(w)));
  for (const row of rows) out += line(row);
  const failures = r.levels.filter((l) => l.failed > 0).map((l) => `concurrency ${l.concurrency}: ${Object.entries(l.errors).map(([e, n]) => `${n}× ${e}`).join(", ")}`);
  if (failures.length) out += `failed: ${failures.join("; ")}\n`;
  const short = r.levels.reduce((n, l) => n + l.shortOfMaxTokens, 0);
  if (short > 0) out += `note: ${short} successful request(s) generated fewer tokens than their max_tokens\n`;
  if (r.stoppedEarly) out += `* stopped early (time cap of ${r.limits.maxSeconds} s, or interrupted)\n`;
  return out;
}

// ───────────────────────────── chart ─────────────────────────────

interface Series {
  name: string;
  color: string;
  dash?: string;
  values: Array<number | null>;
}

const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A round step (1, 2 or 5 × 10^k) giving about `count` intervals up to `max`. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const exp = 10 ** Math.floor(Math.log10(raw));
  const f = raw / exp;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * exp;
}

function numberLabel(v: number): string {
  if (v >= 1) return Number(v.toPrecision(6)).toLocaleString("en-US", { maximumFractionDigits: 1 });
  return String(Number(v.toPrecision(2)));
}

/** Maps a value to a height share (0 at the bottom of the plot, 1 at the top) and lists the grid lines. */
interface YAxis {
  share(v: number): number;
  ticks: number[];
}

function linearAxis(max: number, headroom: number): YAxis {
  const step = niceStep(max, 5);
  const top = Math.ceil((max * headroom) / step) * step;
  const ticks: number[] = [];
  for (let i = 0; i * step <= top + step / 1000; i++) ticks.push(i * step);
  return { share: (v) => v / top, ticks };
}

/** Decades from below the smallest value to above the largest, with 2 and 5 between when there are few. */
function logAxis(min: number, max: number): YAxis {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(max)));
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) {
    for (const m of hi - lo <= 3 ? [1, 2, 5] : [1]) if (e < hi || m === 1) ticks.push(m * 10 ** e);
  }
  return { share: (v) => (Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo), ticks };
}

/**
 * One chart panel: concurrency levels evenly spaced on x, one line per series. `pointLabel`: when given, each
 * point is labelled with its value. `log`: a logarithmic y axis (latencies spanning several decades).
 */
function panel(
  x: number, y: number, w: number, h: number, title: string, yTitle: string, levels: LevelResult[], series: Series[],
  options: { pointLabel?: (v: number) => string; log?: boolean },
): string {
  const left = x + 62, right = x + w - 12, top = y + 30, bottom = y + h - 50;
  const values = series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const max = Math.max(1e-9, ...values);
  const positive = values.filter((v) => v > 0);
  const axis = options.log && positive.length > 0
    ? logAxis(Math.min(...positive), max)
    : linearAxis(max, options.pointLabel ? 1.12 : 1.02);
  const px = (i: number) => (levels.length === 1 ? (left + right) / 2 : left + 18 + (i * (right - left - 36)) / (levels.length - 1));
  const py = (v: number) => bottom - axis.share(v) * (bottom - top);
  const parts: string[] = [];
  parts.push(`<text x="${x + w / 2}" y="${y + 18}" class="title">${escapeXml(title)}</text>`);
  for (const v of axis.ticks) {
    const gy = py(v).toFixed(1);
    parts.push(`<line x1="${left}" x2="${right}" y1="${gy}" y2="${gy}" class="grid"/>`);
    parts.push(`<text x="${left - 6}" y="${gy}" class="ytick">${numberLabel(v)}</text>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" class="frame"/>`);
  levels.forEach((level, i) => {
    parts.push(`<line x1="${px(i)}" x2="${px(i)}" y1="${bottom}" y2="${bottom + 4}" class="axis"/>`);
    parts.push(`<text x="${px(i)}" y="${bottom + 17}" class="xtick">${level.concurrency}${level.truncated ? "*" : ""}</text>`);
    // A level with failed requests says so under its tick: its figures cover only the requests that succeeded.
    if (level.failed > 0) parts.push(`<text x="${px(i)}" y="${bottom + 30}" class="failed">${level.failed} failed</text>`);
  });
  parts.push(`<text x="${(left + right) / 2}" y="${bottom + 44}" class="axistitle">concurrent streams</text>`);
  parts.push(`<text transform="translate(${x + 14} ${(top + bottom) / 2}) rotate(-90)" class="axistitle">${escapeXml(yTitle)}</text>`);
  for (const s of series) {
    // Break the line where a level has no value (nothing completed).
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += `${pen ? "L" : "M"}${px(i).toFixed(1)},${py(v).toFixed(1)} `;
      pen = true;
    });
    parts.push(`<path d="${d.trim()}" fill="none" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`);
    s.values.forEach((v, i) => {
      if (v === null) return;
      parts.push(`<circle cx="${px(i).toFixed(1)}" cy="${py(v).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
      if (options.pointLabel) parts.push(`<text x="${px(i).toFixed(1)}" y="${(py(v) - 9).toFixed(1)}" class="point">${options.pointLabel(v)}</text>`);
    });
  }
  if (series.length > 1) {
    // The legend goes in the top corner whose end of the x axis the lines stay lowest at.
    const highestAt = (i: number) => Math.max(0, ...series.map((s) => axis.share(s.values[i] ?? 0)));
    const onRight = highestAt(levels.length - 1) < highestAt(0);
    const lx = onRight ? right - 82 : left + 10;
    const ly = top + 8;
    parts.push(`<rect x="${lx - 6}" y="${ly - 4}" width="78" height="${series.length * 17 + 4}" class="legend"/>`);
    series.forEach((s, i) => {
      const yy = ly + 8 + i * 17;
      parts.push(`<line x1="${lx}" x2="${lx + 22}" y1="${yy}" y2="${yy}" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`);
      parts.push(`<text x="${lx + 28}" y="${yy}" class="legendtext">${escapeXml(s.name)}</text>`);
    });
  }
  return parts.join("\n");
}

function renderChart(r: BenchResults): string {
  const W = 1200, H = 790, cols = 3, panelW = 390, panelH = 330, x0 = 15, y0 = 84;
  const pick = (f: (l: LevelResult) => number | null) => r.levels.map(f);
  const percentiles = (f: (l: LevelResult) => Distribution): Series[] => [
    { name: "p50", color: "#1f77b4", values: pick((l) => f(l).p50) },
    { name: "p90", color: "#ff7f0e", dash: "6 4", values: pick((l) => f(l).p90) },
    { name: "p99", color: "#d62728", dash: "2 3", values: pick((l) => f(l).p99) },
  ];
  const panels: Array<[string, string, Series[], { pointLabel?: (v: number) => string; log?: boolean }]> = [
    ["Output throughput", "output tokens / s", [{ name: "output tok/s", color: "#2ca02c", values: pick((l) => l.outputTokensPerS) }],
      { pointLabel: (v) => Math.round(v).toLocaleString("en-US") }],
    ["Request throughput", "requests / s", [{ name: "req/s", color: "#9467bd", values: pick((l) => l.requestsPerS) }], { pointLabel: (v) => v.toFixed(1) }],
    ["Time to first token", "TTFT (ms, log scale)", percentiles((l) => l.ttftMs), { log: true }],
    ["Inter-token latency", "ITL between content chunks (ms)", percentiles((l) => l.itlMs), {}],
    ["Time per output token", "TPOT (ms)", percentiles((l) => l.tpotMs), {}],
    ["End-to-end latency", "E2E (ms, log scale)", percentiles((l) => l.e2eMs), { log: true }],
  ];
  const target = r.target.startedStack ? `whole stack: ${r.target.gpuNodes} GPU node(s), ${r.target.model}, wrangler dev, Redis` : r.target.baseURL;
  const w = r.workload;
  const subtitle = `${target} · ${r.machine} (load average ${r.loadAverage.before.toFixed(1)} → ${r.loadAverage.after.toFixed(1)}) · ${r.date.slice(0, 10)}`;
  const subtitle2 = `streaming via the openai SDK · requests per level ${w.requestsPerLevel} · prompt tokens median ${fmt(w.promptTokens.p50)} ` +
    `(max ${fmt(w.promptTokens.max)}) · max_tokens median ${fmt(w.maxTokens.p50)} (${w.shape.shortMaxTokens[0]}–${w.shape.longMaxTokens[1]}) · seed ${w.seed}`;
  const body = panels.map(([title, yTitle, series, panelOptions], i) =>
    panel(x0 + (i % cols) * (panelW + 7), y0 + Math.floor(i / cols) * (panelH + 10), panelW, panelH, title, yTitle, r.levels, series, panelOptions)).join("\n");
  const note = r.stoppedEarly ? `<text x="${W / 2}" y="${H - 10}" class="note">* level cut short by the time cap (${r.limits.maxSeconds} s)</text>` : "";
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">
<style>
  .heading { font-size: 22px; font-weight: bold; text-anchor: middle; fill: #222; }
  .sub { font-size: 12.5px; text-anchor: middle; fill: #555; }
  .title { font-size: 15px; font-weight: bold; text-anchor: middle; fill: #222; }
  .grid { stroke: #e4e4e4; stroke-width: 1; }
  .frame { fill: none; stroke: #888; stroke-width: 1; }
  .axis { stroke: #888; stroke-width: 1; }
  .ytick { font-size: 11.5px; text-anchor: end; dominant-baseline: middle; fill: #444; }
  .xtick { font-size: 12px; text-anchor: middle; fill: #444; }
  .axistitle { font-size: 12.5px; text-anchor: middle; fill: #333; }
  .point { font-size: 11.5px; text-anchor: middle; fill: #222; }
  .legend { fill: white; fill-opacity: 0.9; stroke: #ccc; }
  .legendtext { font-size: 12px; dominant-baseline: middle; fill: #222; }
  .note { font-size: 12px; text-anchor: middle; fill: #a33; }
  .failed { font-size: 11px; text-anchor: middle; fill: #c00; }
</style>
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="30" class="heading">Phi-4 serving, end to end: concurrency sweep (bench:e2e)</text>
<text x="${W / 2}" y="52" class="sub">${escapeXml(subtitle)}</text>
<text x="${W / 2}" y="69" class="sub">${escapeXml(subtitle2)}</text>
${body}
${note}
</svg>
`;
}

/** Ctrl-C / SIGTERM: stop sending, abort what is in flight, stop the stack we started, write nothing, exit 130. */
const interrupt = new AbortController();

main().catch((err: Error) => {
  if (interrupt.signal.aborted) process.exit(130);
  process.stderr.write(`bench:e2e: ${err.message}\n`);
  process.exit(1);
});
