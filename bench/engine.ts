/**
 * `npm run bench:engine [-- --json] [--quick] [--threads N] [--mixed standard|short|quick] [--mixed-only]`
 *
 * The engine under load, on a bench model with seeded random weights and Phi-4's real vocabulary, built
 * once into a cache dir in both our paged layout and the transformers.js layout (build time excluded):
 *  - batch scaling: aggregate decode tokens/s with 1, 4, 16, 32 concurrent requests through the threaded
 *    Engine (64-token prompts, distinct from the first block on and fresh for every load, warm-up included:
 *    freed blocks keep their hashes, so a resubmitted text would hit the prefix cache; the prefix-cache hit
 *    tokens of every load are reported and must be 0; 64 output tokens, sampled with a seed; end-of-turn ids
 *    banned by logit_bias so every request runs the full length);
 *  - transformers.js 4.x generating from the same weights, same intra-op threads, same process, same run,
 *    the same sampling (temperature, top_k; eos banned with min_new_tokens): one request, and 16 requests
 *    served sequentially (each takes one request's time, so its rate is the single request's end-to-end
 *    rate) or as one static batch (equal-length prompts, so no padding: its best case); its best counts;
 *  - engine overhead outside session.run at 32 sequences (engine stats), split into runner work (inputs,
 *    K/V write-back) and the rest (schedule, sample, emit): with temperature 0.8 + top_k 50 (the TopK
 *    preselection path) and with the defaults a client gets (temperature 1, no top_k: the sampler's
 *    full-vocabulary scan); peak KV blocks in use at 32 sequences;
 *  - the host's event-loop delay (p99) while the threaded Engine serves 32 requests, and while
 *    transformers.js generates on the host thread;
 *  - a mixed serving workload (serving-workload.ts): 16 seeded requests with skewed prompt and output lengths,
 *    arriving as a Poisson process and, separately, all at t = 0. Ours: the threaded Engine fed at the arrival
 *    times. transformers.js: sequential in arrival order and FCFS static batches of 4, 8 and 16 (left-padded; a
 *    batch runs until its longest member, only each member's own tokens count), its best strategy counts.
 *    Figure: aggregate output tokens/s = all tokens ÷ (last finish − first arrival), and per-request latency.
 *    `--mixed standard|short|quick` picks the length ranges; `--mixed-only` runs this part alone.
 *
 * Decode tokens/s of a load = tokens delivered inside the window where every request is decoding
 * (from the last request's first token to the first request's last token) ÷ the window. End-to-end
 * tokens/s = all output tokens ÷ (submit → last token), prefill included.
 * The machine may be shared: each round runs our load next to the transformers.js load it is compared
 * with, ratios are taken within a round, and the table prints medians over rounds (3, or 1 with --quick),
 * plus the same figures from each side's best round (the least disturbed one), with the load average.
 * The mixed workload runs once per invocation, after the rounds, our runs between transformers.js' strategies.
 */
import { mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { AutoModelForCausalLM, Tensor, env as tjsEnv, type PreTrainedModel } from "@huggingface/transformers";
import { Engine } from "../gpu-node/engine/engine.ts";
import type { EngineStats } from "../gpu-node/engine/llm-engine.ts";
import { tinyConfig } from "../gpu-node/model/tiny-model.ts";
import { readModelFiles } from "../gpu-node/model/model-files.ts";
import type { Phi3Config } from "../gpu-node/model/phi3-config.ts";
import { RandomWeights } from "../gpu-node/model/random-weights.ts";
import { hasTransformersJsModel, writeTransformersJsModel } from "./transformers-js-layout.ts";
import { writeModel } from "../gpu-node/model/write-model.ts";
import { parseChatRequest } from "../shared/request-schema.ts";
import { renderChat } from "../gpu-node/tokenizer/chat-format.ts";
import { phi4Tokenizer } from "../gpu-node/tokenizer/phi4-tokenizer.ts";
import {
  fcfsGroups,
  servingFigures,
  servingWorkload,
  staticBatchTimeline,
  type MeasuredBatch,
  type RequestTiming,
  type ServingFigures,
  type ServingRequest,
  type ServingWorkload,
  type WorkloadShape,
} from "./serving-workload.ts";

const BENCH_CONFIG: Phi3Config = tinyConfig({ numLayers: 8, hiddenSize: 1024, numHeads: 16, numKvHeads: 4, headDim: 64, intermediateSize: 2816 });
const WEIGHT_SEED = 0;
const PROMPT_TOKENS = 64;
const OUTPUT_TOKENS = 64;
const TEMPERATURE = 0.8;
const TOP_K = 50;
const BLOCK_SIZE = 16;
const EOS_IDS = BENCH_CONFIG.eosTokenIds;

interface Args {
  json: boolean;
  quick: boolean;
  threads: number;
  /** Only the mixed serving workload (no equal-length rounds). */
  mixedOnly: boolean;
  mixed: MixedShapeName;
}

function parseCli(): Args {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      json: { type: "boolean", default: false },
      quick: { type: "boolean", default: false },
      threads: { type: "string", default: "2" },
      "mixed-only": { type: "boolean", default: false },
      mixed: { type: "string" },
    },
  });
  const threads = Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) {
    process.stderr.write("bench:engine: --threads must be a positive integer\n");
    process.exit(2);
  }
  const mixed = values.mixed ?? (values.quick ? "quick" : "standard");
  if (!(mixed in MIXED_SHAPES)) {
    process.stderr.write(`bench:engine: --mixed must be one of ${Object.keys(MIXED_SHAPES).join(", ")}\n`);
    process.exit(2);
  }
  return { json: values.json!, quick: values.quick!, threads, mixedOnly: values["mixed-only"]!, mixed: mixed as MixedShapeName };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const log = (args: Args, line: string) => {
  if (!args.json) process.stderr.write(line + "\n");
};

// ---------------------------------------------------------------- model files

/** Both layouts of the bench model, built once per config into the OS temp dir (reused by later runs). */
async function benchModels(args: Args): Promise<{ pagedDir: string; tjsRoot: string; tjsName: string; buildSec: number }> {
  const c = BENCH_CONFIG;
  const key = `l${c.numLayers}-h${c.hiddenSize}-a${c.numHeads}-kv${c.numKvHeads}-i${c.intermediateSize}-v${c.vocabSize}-s${WEIGHT_SEED}`;
  const root = path.join(os.tmpdir(), "phi4-bench-engine", key);
  const pagedDir = path.join(root, "paged");
  const tjsName = "transformers-js";
  await mkdir(root, { recursive: true });
  const started = performance.now();
  const pagedOk = await readModelFiles(pagedDir).then(() => true, () => false);
  if (!pagedOk) {
    log(args, `building the bench model (paged layout) in ${pagedDir} ...`);
    await writeModel(c, new RandomWeights(c, WEIGHT_SEED), { outDir: pagedDir, dtype: "fp32" });
  }
  if (!(await hasTransformersJsModel(path.join(root, tjsName)))) {
    log(args, `building the bench model (transformers.js layout) in ${path.join(root, tjsName)} ...`);
    await writeTransformersJsModel(c, new RandomWeights(c, WEIGHT_SEED), path.join(root, tjsName));
  }
  return { pagedDir, tjsRoot: root, tjsName, buildSec: (performance.now() - started) / 1000 };
}

// ---------------------------------------------------------------- prompts

/**
 * Distinct user messages whose rendered chat is exactly `lengths[i]` tokens (distinct from the first block on:
 * no prefix-cache help; `tag` keeps one set of prompts from sharing blocks with another).
 */
function promptMessages(lengths: number[], tag = "Request"): { texts: string[]; ids: number[][] } {
  const tok = phi4Tokenizer();
  const words = ["river", "stone", "lamp", "cloud", "garden", "window", "engine", "forest", "signal", "harbor", "paper", "orange"];
  const render = (text: string) => renderChat(tok, [{ role: "user", content: text }]).ids;
  const texts: string[] = [];
  const ids: number[][] = [];
  lengths.forEach((tokens, i) => {
    let text = `${tag} ${i}: describe`;
    // Whole words in strides while far from the target (each adds at least one token), then one at a time.
    for (let w = 0; render(text).length < tokens; ) {
      const stride = Math.max(1, Math.floor((tokens - render(text).length) / 2));
      for (let k = 0; k < stride; k++, w++) text += ` ${words[(i * 7 + w) % words.length]}`;
    }
    let r = render(text);
    // A word may overshoot by more than one token: trim characters from the end until it fits exactly.
    while (r.length > tokens) {
      text = text.slice(0, -1);
      r = render(text);
    }
    if (r.length !== tokens) throw new Error(`could not build a ${tokens}-token prompt (got ${r.length})`);
    texts.push(text);
    ids.push(r);
  });
  return { texts, ids };
}

/**
 * "top_k": temperature 0.8 and top_k 50, the TopK-preselected path (the comparison with transformers.js);
 * "default": no temperature or top_k, what a client that sets neither gets (temperature 1, full vocabulary).
 */
type Sampling = "top_k" | "default";

function chatBody(text: string, seed: number, maxTokens = OUTPUT_TOKENS, sampling: Sampling = "top_k"): Record<string, unknown> {
  return {
    model: "microsoft/phi-4",
    messages: [{ role: "user", content: text }],
    max_tokens: maxTokens,
    ...(sampling === "top_k" ? { temperature: TEMPERATURE, top_k: TOP_K } : {}),
    seed,
    logit_bias: Object.fromEntries(EOS_IDS.map((t) => [String(t), -100])),
  };
}

// ---------------------------------------------------------------- timing of one load

/** Per-request token arrival times (ms), in order; one entry per token. */
type Arrivals = number[][];

interface LoadFigures {
  requests: number;
  outputTokens: number;
  e2eMs: number;
  e2eTokensPerSec: number;
  decodeTokensPerSec: number;
  decodeWindowMs: number;
}

function loadFigures(arrivals: Arrivals, startMs: number): LoadFigures {
  const firsts = arrivals.map((a) => a[0]);
  const lasts = arrivals.map((a) => a[a.length - 1]);
  const from = Math.max(...firsts);
  const to = Math.min(...lasts);
  let inWindow = 0;
  for (const a of arrivals) for (const t of a) if (t > from && t <= to) inWindow++;
  const outputTokens = arrivals.reduce((n, a) => n + a.length, 0);
  const e2eMs = Math.max(...lasts) - startMs;
  const window = to - from;
  return {
    requests: arrivals.length,
    outputTokens,
    e2eMs,
    e2eTokensPerSec: (outputTokens * 1000) / e2eMs,
    decodeTokensPerSec: window > 0 ? (inWindow * 1000) / window : NaN,
    decodeWindowMs: window,
  };
}

// ---------------------------------------------------------------- our engine

interface EngineLoad extends LoadFigures {
  stepMs: number;
  sessionRunMs: number;
  forwardMs: number;
  steps: number;
  overheadShare: number;
  /** Prompt tokens served from the prefix cache during this load: 0 when the prompts are really fresh. */
  prefixCacheHitTokens: number;
  /** KV blocks in use, sampled every 200 ms (the block manager's own count). */
  kvBlocksSampled: number[];
  eventLoopP99Ms?: number;
  eventLoopMaxMs?: number;
}

async function engineLoad(
  engine: Engine,
  texts: string[],
  runId: string,
  opts: { eventLoop?: boolean; sampleKv?: boolean; sampling?: Sampling } = {},
): Promise<EngineLoad> {
  const before = await engine.stats();
  const histogram = opts.eventLoop ? monitorEventLoopDelay({ resolution: 1 }) : undefined;
  histogram?.enable();
  const kvBlocksSampled: number[] = [];
  let sampling = opts.sampleKv ?? false;
  const sampler = (async () => {
    while (sampling) {
      await new Promise((r) => setTimeout(r, 200));
      if (!sampling) break;
      const s = await engine.stats();
      if (s.kvBlocksUsed > 0) kvBlocksSampled.push(s.kvBlocksUsed);
    }
  })();
  const start = performance.now();
  const arrivals: Arrivals = await Promise.all(
    texts.map(async (text, i) => {
      const times: number[] = [];
      for await (const e of engine.submit({ id: `${runId}-${i}`, request: parse(chatBody(text, 1000 + i, OUTPUT_TOKENS, opts.sampling)) })) {
        if (e.type === "error") throw new Error(`request ${runId}-${i}: ${e.message}`);
        if (e.type === "delta") {
          const t = performance.now();
          for (let k = 0; k < e.tokens.length; k++) times.push(t);
        }
      }
      if (times.length !== OUTPUT_TOKENS) throw new Error(`request ${runId}-${i}: ${times.length} tokens, expected ${OUTPUT_TOKENS}`);
      return times;
    }),
  );
  sampling = false;
  await sampler;
  histogram?.disable();
  const after = await engine.stats();
  const d = (k: keyof EngineStats) => (after[k] as number) - (before[k] as number);
  return {
    ...loadFigures(arrivals, start),
    stepMs: d("stepMs"),
    sessionRunMs: d("sessionRunMs"),
    forwardMs: d("forwardMs"),
    steps: d("steps"),
    overheadShare: (d("stepMs") - d("sessionRunMs")) / d("stepMs"),
    prefixCacheHitTokens: d("prefixCacheHitTokens"),
    kvBlocksSampled,
    ...(histogram ? { eventLoopP99Ms: histogram.percentile(99) / 1e6, eventLoopMaxMs: histogram.max / 1e6 } : {}),
  };
}

function parse(body: Record<string, unknown>) {
  const r = parseChatRequest(body);
  if (!r.ok) throw r.error;
  return r.request;
}

// ---------------------------------------------------------------- transformers.js

async function loadTransformersJs(root: string, name: string, threads: number): Promise<PreTrainedModel> {
  tjsEnv.allowRemoteModels = false;
  tjsEnv.localModelPath = root;
  tjsEnv.useFSCache = false;
  return AutoModelForCausalLM.from_pretrained(name, {
    dtype: "fp32",
    device: "cpu",
    session_options: { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: "all", executionMode: "sequential" },
  });
}

/**
 * One transformers.js generate over `rows`, left-padded to the longest (a static batch), `newTokens` per row with
 * eos banned; returns when it started and when each step's tokens arrived (every row gets one per step).
 */
async function transformersGenerate(model: PreTrainedModel, rows: number[][], newTokens = OUTPUT_TOKENS): Promise<{ startMs: number; stepMs: number[]; endMs: number }> {
  const width = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(rows.length * width).fill(BigInt(BENCH_CONFIG.padTokenId));
  const mask = new BigInt64Array(rows.length * width);
  rows.forEach((r, b) =>
    r.forEach((t, i) => {
      ids[b * width + width - r.length + i] = BigInt(t);
      mask[b * width + width - r.length + i] = 1n;
    }),
  );
  const stepMs: number[] = [];
  let prompt = true;
  const streamer = {
    put(_value: bigint[][]) {
      if (prompt) {
        prompt = false; // generate() first puts the prompt ids
        return;
      }
      stepMs.push(performance.now());
    },
    end() {},
  };
  const startMs = performance.now();
  await model.generate({
    input_ids: new Tensor("int64", ids, [rows.length, width]),
    attention_mask: new Tensor("int64", mask, [rows.length, width]),
    max_new_tokens: newTokens,
    min_new_tokens: newTokens, // bans the eos ids, as logit_bias does on our side
    do_sample: true,
    temperature: TEMPERATURE,
    top_k: TOP_K,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    streamer: streamer as any,
  });
  const endMs = performance.now();
  if (stepMs.length !== newTokens) throw new Error(`transformers.js produced ${stepMs.length} tokens, expected ${newTokens}`);
  return { startMs, stepMs, endMs };
}

/** Equal-length rows: every row's token arrival times are the step times. */
async function transformersArrivals(model: PreTrainedModel, rows: number[][]): Promise<Arrivals> {
  const { stepMs } = await transformersGenerate(model, rows);
  return rows.map(() => stepMs);
}

// ---------------------------------------------------------------- mixed serving workload

/**
 * Skewed lengths and Poisson arrivals (see serving-workload.ts); both sides serve the same seeded requests.
 * `standard` (the default) is the issue's serving mix: prompts 16–512, outputs 16–256, mostly short, one request
 * a second. Every transformers.js strategy serves the whole workload and the slowest take minutes on a busy
 * machine, so `short` (outputs up to 128, twice the rate) and `quick` (the `--quick` default) trade realism for time.
 */
const MIXED_SHAPES = {
  standard: { count: 16, seed: 1, prompt: { min: 16, max: 512 }, output: { min: 16, max: 256 }, skew: 2, arrivalsPerSec: 1 },
  short: { count: 16, seed: 1, prompt: { min: 16, max: 512 }, output: { min: 16, max: 128 }, skew: 2, arrivalsPerSec: 2 },
  quick: { count: 16, seed: 1, prompt: { min: 16, max: 256 }, output: { min: 8, max: 48 }, skew: 2, arrivalsPerSec: 6 },
} satisfies Record<string, WorkloadShape>;
type MixedShapeName = keyof typeof MIXED_SHAPES;
/** transformers.js strategies: 1 = sequential in arrival order, else FCFS static batches of that size. */
const STATIC_BATCH_SIZES = [1, 4, 8, 16];

interface EngineServing {
  timings: RequestTiming[];
  figures: ServingFigures;
  steps: number;
  stepMs: number;
  sessionRunMs: number;
  samplerMs: number;
  generatedTokens: number;
  preemptions: number;
  prefixCacheHitTokens: number;
}

/** Our threaded Engine fed at the workload's arrival times (ms after the first); one seeded request per entry. */
async function engineServing(engine: Engine, requests: ServingRequest[], texts: string[], runId: string): Promise<EngineServing> {
  const before = await engine.stats();
  const t0 = performance.now();
  const timings = await Promise.all(
    requests.map(async (r): Promise<RequestTiming> => {
      const wait = t0 + r.arrivalMs - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const arrivalMs = performance.now() - t0;
      let firstTokenMs = NaN;
      let finishMs = NaN;
      let tokens = 0;
      const id = `${runId}-${r.index}`;
      for await (const e of engine.submit({ id, request: parse(chatBody(texts[r.index], 2000 + r.index, r.maxTokens)) })) {
        if (e.type === "error") throw new Error(`request ${id}: ${e.message}`);
        if (e.type === "delta" && e.tokens.length > 0) {
          finishMs = performance.now() - t0;
          if (tokens === 0) firstTokenMs = finishMs;
          tokens += e.tokens.length;
        }
      }
      if (tokens !== r.maxTokens) throw new Error(`request ${id}: ${tokens} tokens, expected ${r.maxTokens}`);
      return { index: r.index, arrivalMs, firstTokenMs, finishMs, tokens };
    }),
  );
  const after = await engine.stats();
  const d = (k: keyof EngineStats) => (after[k] as number) - (before[k] as number);
  return {
    timings,
    figures: servingFigures(timings),
    steps: d("steps"),
    stepMs: d("stepMs"),
    sessionRunMs: d("sessionRunMs"),
    samplerMs: d("samplerMs"),
    generatedTokens: d("generatedTokens"),
    preemptions: d("preemptions"),
    prefixCacheHitTokens: d("prefixCacheHitTokens"),
  };
}

interface StaticStrategy {
  size: number;
  batches: MeasuredBatch[];
  /** Σ generate time; of it, time to each group's first token (prefill, padded). */
  busyMs: number;
  prefillMs: number;
  /** Prompt tokens computed (padded to each group's longest) and real; rows × steps computed and tokens wanted. */
  promptTokensComputed: number;
  promptTokensReal: number;
  rowStepsComputed: number;
  tokensWanted: number;
}

/** transformers.js with static batches of `size` (1 = sequential): every FCFS group generated once, back to back. */
async function transformersStrategy(model: PreTrainedModel, requests: ServingRequest[], ids: number[][], size: number, log: (line: string) => void): Promise<StaticStrategy> {
  const s: StaticStrategy = { size, batches: [], busyMs: 0, prefillMs: 0, promptTokensComputed: 0, promptTokensReal: 0, rowStepsComputed: 0, tokensWanted: 0 };
  for (const group of fcfsGroups(requests, size)) {
    const rows = group.map((r) => ids[r.index]);
    const longest = Math.max(...group.map((r) => r.maxTokens));
    const { startMs, stepMs, endMs } = await transformersGenerate(model, rows, longest);
    s.batches.push({
      members: group.map((r) => r.index),
      durationMs: endMs - startMs,
      firstTokenOffsetMs: group.map(() => stepMs[0] - startMs),
      finishOffsetMs: group.map((r) => stepMs[r.maxTokens - 1] - startMs),
      maxTokens: group.map((r) => r.maxTokens),
    });
    s.busyMs += endMs - startMs;
    s.prefillMs += stepMs[0] - startMs;
    s.promptTokensComputed += group.length * Math.max(...rows.map((r) => r.length));
    s.promptTokensReal += rows.reduce((n, r) => n + r.length, 0);
    s.rowStepsComputed += group.length * longest;
    s.tokensWanted += group.reduce((n, r) => n + r.maxTokens, 0);
  }
  log(`  mixed: transformers.js ${size === 1 ? "sequential" : `static batches of ${size}`}: ${(s.busyMs / 1000).toFixed(1)} s generating (${((100 * s.tokensWanted) / s.rowStepsComputed).toFixed(0)}% of computed rows useful)`);
  return s;
}

interface MixedComparison {
  workload: ServingWorkload;
  engine: { poisson: EngineServing; burst: EngineServing };
  transformersJs: StaticStrategy[];
}

/** The mixed workload on both sides, ours between their strategies so machine noise falls on both. */
async function mixedComparison(engine: Engine, model: PreTrainedModel, args: Args): Promise<MixedComparison> {
  const workload = servingWorkload(MIXED_SHAPES[args.mixed]);
  const lengths = workload.burst.map((r) => r.promptTokens);
  // Separate prompt sets per arrival variant, so the second run of ours finds nothing of the first in the prefix cache.
  const poissonPrompts = promptMessages(lengths, "Mixed request");
  const burstPrompts = promptMessages(lengths, "Burst request");
  const progress = (line: string) => log(args, line);
  const ours = async (variant: "poisson" | "burst") => {
    const e = await engineServing(engine, workload[variant], (variant === "poisson" ? poissonPrompts : burstPrompts).texts, `mixed-${variant}`);
    progress(`  mixed: engine, ${variant} arrivals: ${e.figures.tokensPerSec.toFixed(1)} tok/s (${e.figures.outputTokens} tokens in ${(e.figures.makespanMs / 1000).toFixed(1)} s)`);
    return e;
  };
  const strategies: StaticStrategy[] = [];
  const poisson = await ours("poisson");
  for (const size of STATIC_BATCH_SIZES.slice(0, 2)) strategies.push(await transformersStrategy(model, workload.poisson, poissonPrompts.ids, size, progress));
  const burst = await ours("burst");
  for (const size of STATIC_BATCH_SIZES.slice(2)) strategies.push(await transformersStrategy(model, workload.poisson, poissonPrompts.ids, size, progress));
  return { workload, engine: { poisson, burst }, transformersJs: strategies };
}

/** JSON figures of the mixed comparison: per arrival variant, ours, each transformers.js strategy, its best, the ratio. */
function mixedResult(m: MixedComparison, shape: MixedShapeName) {
  const strategyName = (size: number) => (size === 1 ? "sequential" : `static batches of ${size}`);
  const variant = (v: "poisson" | "burst") => {
    const theirs = m.transformersJs.map((s) => ({ strategy: strategyName(s.size), ...servingFigures(staticBatchTimeline(m.workload[v], s.batches)) }));
    const best = theirs.reduce((a, b) => (b.tokensPerSec > a.tokensPerSec ? b : a));
    const e = m.engine[v];
    return {
      ratio: e.figures.tokensPerSec / best.tokensPerSec,
      engine: e.figures,
      transformers_js_best: best.strategy,
      transformers_js_best_tokens_per_sec: best.tokensPerSec,
      /** Latency of its best-throughput strategy ÷ ours (per-request finish − arrival). */
      transformers_js_best_latency_p50_over_ours: best.latencyP50Ms / e.figures.latencyP50Ms,
      transformers_js_best_latency_p90_over_ours: best.latencyP90Ms / e.figures.latencyP90Ms,
      transformers_js: theirs,
    };
  };
  const engineWork = (e: EngineServing) => ({
    steps: e.steps,
    tokens_per_step: e.generatedTokens / e.steps,
    busy_share: e.stepMs / e.figures.makespanMs,
    session_run_share_of_step: e.sessionRunMs / e.stepMs,
    sampler_share_of_step: e.samplerMs / e.stepMs,
    preemptions: e.preemptions,
    prefix_cache_hit_tokens: e.prefixCacheHitTokens,
  });
  return {
    workload: {
      shape,
      ...MIXED_SHAPES[shape],
      promptTokens: m.workload.burst.map((r) => r.promptTokens),
      maxTokens: m.workload.burst.map((r) => r.maxTokens),
      poissonArrivalsMs: m.workload.poisson.map((r) => Math.round(r.arrivalMs)),
      totalOutputTokens: m.workload.burst.reduce((n, r) => n + r.maxTokens, 0),
    },
    poisson: variant("poisson"),
    burst: variant("burst"),
    engine_work: { poisson: engineWork(m.engine.poisson), burst: engineWork(m.engine.burst) },
    transformers_js_work: m.transformersJs.map((s) => ({
      strategy: strategyName(s.size),
      generate_s: s.busyMs / 1000,
      prefill_share: s.prefillMs / s.busyMs,
      prompt_tokens_computed: s.promptTokensComputed,
      prompt_tokens_real: s.promptTokensReal,
      row_steps_computed: s.rowStepsComputed,
      useful_row_share: s.tokensWanted / s.rowStepsComputed,
    })),
  };
}

// ---------------------------------------------------------------- main


interface Round {
  engine: Map<number, EngineLoad>;
  /** 32 concurrent with the default sampling (temperature 1, no top_k). */
  engineDefault32: EngineLoad;
  tjsSingle: LoadFigures;
  tjsBatch16: LoadFigures;
  tjsEventLoopP99Ms: number;
  loadAverage: number;
}

/** One round: each of our loads next to the transformers.js load it is compared with, so machine noise hits both alike. */
async function round(r: number, engine: Engine, model: PreTrainedModel, ids: number[][], args: Args): Promise<Round> {
  const loads = new Map<number, EngineLoad>();
  const ours = async (n: number, opts: { eventLoop?: boolean; sampleKv?: boolean; sampling?: Sampling } = {}) => {
    const sampling = opts.sampling ?? "top_k";
    // Fresh texts for every load: nothing this engine has seen before, so the prefix cache cannot help.
    const { texts } = promptMessages(Array(n).fill(PROMPT_TOKENS), `Round ${r + 1} load ${n} ${sampling} request`);
    const l = await engineLoad(engine, texts, `r${r}-c${n}-${sampling}`, opts);
    log(
      args,
      `  round ${r + 1}: engine ${String(n).padStart(2)} concurrent (${sampling}): ${l.decodeTokensPerSec.toFixed(1)} decode tok/s, ${l.e2eTokensPerSec.toFixed(1)} e2e tok/s, outside run ${(l.overheadShare * 100).toFixed(1)}%, prefix-cache hits ${l.prefixCacheHitTokens} tokens`,
    );
    return l;
  };
  const theirs = async (rows: number[][]) => {
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    const start = performance.now();
    const f = loadFigures(await transformersArrivals(model, rows), start);
    histogram.disable();
    log(args, `  round ${r + 1}: transformers.js ${String(rows.length).padStart(2)} rows: ${f.decodeTokensPerSec.toFixed(1)} decode tok/s, ${f.e2eTokensPerSec.toFixed(1)} e2e tok/s`);
    return { f, p99: histogram.percentile(99) / 1e6 };
  };
  loads.set(1, await ours(1));
  const single = await theirs([ids[r % ids.length]]);
  loads.set(16, await ours(16));
  const batch = await theirs(ids.slice(0, 16));
  loads.set(32, await ours(32, { eventLoop: true, sampleKv: true }));
  const default32 = await ours(32, { sampling: "default" });
  loads.set(4, await ours(4));
  return { engine: loads, engineDefault32: default32, tjsSingle: single.f, tjsBatch16: batch.f, tjsEventLoopP99Ms: single.p99, loadAverage: os.loadavg()[0] };
}

async function main(): Promise<void> {
  const args = parseCli();
  const { pagedDir, tjsRoot, tjsName, buildSec } = await benchModels(args);
  const concurrency = [1, 4, 16, 32];
  const maxN = Math.max(...concurrency);
  // transformers.js has no prefix cache: it may see the same texts every round.
  const { ids } = promptMessages(Array(maxN).fill(PROMPT_TOKENS));
  const rounds = args.mixedOnly ? 0 : args.quick ? 1 : 3;
  const loadBefore = os.loadavg()[0];
  // Room for every mixed request at once too (so nothing there is preempted for lack of blocks).
  const mixedKvTokens = servingWorkload(MIXED_SHAPES[args.mixed]).burst.reduce((n, r) => n + Math.ceil((r.promptTokens + r.maxTokens) / BLOCK_SIZE) * BLOCK_SIZE, 0);

  const engine = await Engine.start({
    modelDir: pagedDir,
    kvCacheTokens: Math.max(2 * maxN * (PROMPT_TOKENS + OUTPUT_TOKENS), mixedKvTokens),
    blockSize: BLOCK_SIZE,
    maxBatch: maxN,
    maxBatchTokens: 512,
    intraOpThreads: args.threads,
    nodeName: "bench",
  });
  let model: PreTrainedModel | undefined;
  const results: Round[] = [];
  let mixed: MixedComparison | undefined;
  try {
    model = await loadTransformersJs(tjsRoot, tjsName, args.threads);
    log(args, "warming up both ...");
    await engineLoad(engine, promptMessages([PROMPT_TOKENS, PROMPT_TOKENS], "Warm-up request").texts, "warmup");
    await transformersGenerate(model, [ids[0]]);
    for (let r = 0; r < rounds; r++) results.push(await round(r, engine, model, ids, args));
    log(args, "mixed serving workload ...");
    mixed = await mixedComparison(engine, model, args);
  } finally {
    await engine.close();
    await model?.dispose();
  }

  const mixedFigures = mixedResult(mixed!, args.mixed);
  if (args.mixedOnly) {
    if (args.json) console.log(JSON.stringify({ bench: "engine", mixed_16: mixedFigures }));
    else printMixed(mixedFigures);
    return;
  }

  // Medians over rounds; ratios are taken within a round (same machine state), then their median.
  const med = (f: (r: Round) => number) => median(results.map(f));
  const best = (f: (r: Round) => number) => Math.max(...results.map(f));
  const eng = (n: number, f: (l: EngineLoad) => number) => med((r) => f(r.engine.get(n)!));
  const decode = (n: number) => eng(n, (l) => l.decodeTokensPerSec);
  const e2e = (n: number) => eng(n, (l) => l.e2eTokensPerSec);
  const perStep = (n: number, f: (l: EngineLoad) => number) => eng(n, (l) => f(l) / l.steps);
  const tjsSeq16 = (r: Round) => r.tjsSingle.e2eTokensPerSec; // 16 requests one after another: each takes one request's time
  const tjsBest16 = (r: Round) => Math.max(r.tjsBatch16.e2eTokensPerSec, tjsSeq16(r));
  const kvBlocksSampled = results.flatMap((r) => r.engine.get(maxN)!.kvBlocksSampled);
  const c = BENCH_CONFIG;

  const result = {
    bench: "engine",
    machine: { cores: os.availableParallelism(), node: process.version, threads: args.threads, loadAverageBefore: loadBefore, loadAverageDuring: med((r) => r.loadAverage) },
    model: { layers: c.numLayers, hidden: c.hiddenSize, heads: c.numHeads, kvHeads: c.numKvHeads, intermediate: c.intermediateSize, vocab: c.vocabSize, dtype: "fp32", buildOrLoadSec: buildSec },
    workload: { promptTokens: PROMPT_TOKENS, outputTokens: OUTPUT_TOKENS, temperature: TEMPERATURE, topK: TOP_K, blockSize: BLOCK_SIZE, rounds },
    scaling_32_over_1: med((r) => r.engine.get(32)!.decodeTokensPerSec / r.engine.get(1)!.decodeTokensPerSec),
    vs_transformers_js_1: med((r) => r.engine.get(1)!.decodeTokensPerSec / r.tjsSingle.decodeTokensPerSec),
    vs_transformers_js_16: med((r) => r.engine.get(16)!.e2eTokensPerSec / tjsBest16(r)),
    vs_transformers_js_16_sequential: med((r) => r.engine.get(16)!.e2eTokensPerSec / tjsSeq16(r)),
    /** 16 mixed requests (skewed prompt and output lengths) arriving as a Poisson process: ours ÷ transformers.js' best strategy. */
    vs_transformers_js_16_mixed: mixedFigures.poisson.ratio,
    /** The same 16 mixed requests all at t = 0. */
    vs_transformers_js_16_mixed_burst: mixedFigures.burst.ratio,
    engine_16_mixed_tokens_per_sec: mixedFigures.poisson.engine.tokensPerSec,
    transformers_js_16_mixed_best_tokens_per_sec: mixedFigures.poisson.transformers_js_best_tokens_per_sec,
    transformers_js_16_mixed_best: mixedFigures.poisson.transformers_js_best,
    overhead_share_32: eng(maxN, (l) => l.overheadShare),
    /** The same at the defaults a client gets (temperature 1, no top_k): the full-vocabulary scan. */
    overhead_share_32_default_sampling: med((r) => r.engineDefault32.overheadShare),
    engine_32_default_sampling: {
      decode_tokens_per_sec: med((r) => r.engineDefault32.decodeTokensPerSec),
      step_ms: med((r) => r.engineDefault32.stepMs / r.engineDefault32.steps),
      session_run_ms: med((r) => r.engineDefault32.sessionRunMs / r.engineDefault32.steps),
      schedule_sample_emit_ms: med((r) => (r.engineDefault32.stepMs - r.engineDefault32.forwardMs) / r.engineDefault32.steps),
    },
    /** Prompt tokens served from the prefix cache, per load and round: every prompt is fresh, so all 0. */
    prefix_cache_hit_tokens: Object.fromEntries([
      ...concurrency.map((n) => [String(n), results.map((r) => r.engine.get(n)!.prefixCacheHitTokens)]),
      ["32_default_sampling", results.map((r) => r.engineDefault32.prefixCacheHitTokens)],
    ]),
    event_loop_p99_ms: eng(maxN, (l) => l.eventLoopP99Ms!),
    event_loop_max_ms: eng(maxN, (l) => l.eventLoopMaxMs!),
    kv_block_bytes: engine.kvBytesPerBlock,
    kv_blocks_used_peak_at_32: Math.max(0, ...kvBlocksSampled),
    kv_blocks_needed_at_32: maxN * Math.ceil((PROMPT_TOKENS + OUTPUT_TOKENS) / BLOCK_SIZE),
    engine_decode_tokens_per_sec: Object.fromEntries(concurrency.map((n) => [n, decode(n)])),
    engine_e2e_tokens_per_sec: Object.fromEntries(concurrency.map((n) => [n, e2e(n)])),
    engine_step_ms: Object.fromEntries(concurrency.map((n) => [n, perStep(n, (l) => l.stepMs)])),
    engine_session_run_ms: Object.fromEntries(concurrency.map((n) => [n, perStep(n, (l) => l.sessionRunMs)])),
    /** Per step: runner work outside session.run (inputs, K/V write-back) and the rest (schedule, sample, emit). */
    engine_runner_outside_run_ms: Object.fromEntries(concurrency.map((n) => [n, perStep(n, (l) => l.forwardMs - l.sessionRunMs)])),
    engine_schedule_sample_emit_ms: Object.fromEntries(concurrency.map((n) => [n, perStep(n, (l) => l.stepMs - l.forwardMs)])),
    engine_overhead_share: Object.fromEntries(concurrency.map((n) => [n, eng(n, (l) => l.overheadShare)])),
    transformers_js_1_decode_tokens_per_sec: med((r) => r.tjsSingle.decodeTokensPerSec),
    transformers_js_1_e2e_tokens_per_sec: med((r) => r.tjsSingle.e2eTokensPerSec),
    transformers_js_16_sequential_tokens_per_sec: med(tjsSeq16),
    transformers_js_16_static_batch_tokens_per_sec: med((r) => r.tjsBatch16.e2eTokensPerSec),
    transformers_js_16_static_batch_decode_tokens_per_sec: med((r) => r.tjsBatch16.decodeTokensPerSec),
    transformers_js_16_best: med((r) => r.tjsBatch16.e2eTokensPerSec) >= med(tjsSeq16) ? "static batch" : "sequential",
    transformers_js_event_loop_p99_ms: med((r) => r.tjsEventLoopP99Ms),
    /** On a shared machine the fastest round is the least disturbed one: the same figures from each side's best round. */
    best_of_rounds: {
      scaling_32_over_1: best((r) => r.engine.get(32)!.decodeTokensPerSec) / best((r) => r.engine.get(1)!.decodeTokensPerSec),
      vs_transformers_js_1: best((r) => r.engine.get(1)!.decodeTokensPerSec) / best((r) => r.tjsSingle.decodeTokensPerSec),
      vs_transformers_js_16: best((r) => r.engine.get(16)!.e2eTokensPerSec) / best(tjsBest16),
      engine_decode_tokens_per_sec: Object.fromEntries(concurrency.map((n) => [n, best((r) => r.engine.get(n)!.decodeTokensPerSec)])),
      engine_16_e2e_tokens_per_sec: best((r) => r.engine.get(16)!.e2eTokensPerSec),
      transformers_js_1_decode_tokens_per_sec: best((r) => r.tjsSingle.decodeTokensPerSec),
      transformers_js_16_best_tokens_per_sec: best(tjsBest16),
    },
    mixed_16: mixedFigures,
  };
  if (args.json) console.log(JSON.stringify(result));
  else printTable(result, concurrency);
}

function printTable(r: any, concurrency: number[]): void {
  const m = r.model;
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "—");
  const ok = (v: boolean) => (v ? "ok" : "MISSED");
  console.log(`bench:engine — ${r.machine.cores} cores, ${r.machine.threads} intra-op threads, node ${r.machine.node}, load average ${f(r.machine.loadAverageBefore, 2)} before / ${f(r.machine.loadAverageDuring, 2)} during`);
  console.log(`model: ${m.layers} layers, hidden ${m.hidden}, heads ${m.heads}/${m.kvHeads}, intermediate ${m.intermediate}, vocab ${m.vocab}, fp32`);
  console.log(`workload: prompt ${PROMPT_TOKENS} tokens, output ${OUTPUT_TOKENS} tokens, temperature ${TEMPERATURE}, top_k ${TOP_K}, seeded, eos banned; medians of ${r.workload.rounds} round(s)`);
  console.log("\nour engine (threaded Engine: continuous batching, paged KV)");
  console.log("  concurrent | decode tok/s | e2e tok/s | step ms | session.run | runner other | sched+sample | outside run");
  for (const n of concurrency) {
    console.log(
      `  ${String(n).padStart(10)} | ${f(r.engine_decode_tokens_per_sec[n]).padStart(12)} | ${f(r.engine_e2e_tokens_per_sec[n]).padStart(9)} | ${f(r.engine_step_ms[n], 1).padStart(7)} | ${f(r.engine_session_run_ms[n], 1).padStart(11)} | ${f(r.engine_runner_outside_run_ms[n], 2).padStart(12)} | ${f(r.engine_schedule_sample_emit_ms[n], 2).padStart(12)} | ${f(r.engine_overhead_share[n] * 100).padStart(10)}%`,
    );
  }
  console.log("\ntransformers.js 4.x (same weights, same threads, host thread)");
  console.log(`  1 request:              ${f(r.transformers_js_1_decode_tokens_per_sec)} decode tok/s, ${f(r.transformers_js_1_e2e_tokens_per_sec)} e2e tok/s`);
  console.log(`  16 requests sequential: ${f(r.transformers_js_16_sequential_tokens_per_sec)} e2e tok/s`);
  console.log(`  16 as one static batch: ${f(r.transformers_js_16_static_batch_tokens_per_sec)} e2e tok/s (${f(r.transformers_js_16_static_batch_decode_tokens_per_sec)} decode tok/s)`);
  console.log(`  host event-loop p99 while it generates: ${f(r.transformers_js_event_loop_p99_ms)} ms`);
  console.log("\n  figure                           |  value | target");
  console.log(`  scaling_32_over_1                | ${f(r.scaling_32_over_1, 2).padStart(6)} | ≥ 6    ${ok(r.scaling_32_over_1 >= 6)}`);
  console.log(`  vs_transformers_js_1             | ${f(r.vs_transformers_js_1, 2).padStart(6)} | ≥ 1.0  ${ok(r.vs_transformers_js_1 >= 1)}`);
  console.log(`  vs_transformers_js_16 (its best) | ${f(r.vs_transformers_js_16, 2).padStart(6)} | ≥ 4    ${ok(r.vs_transformers_js_16 >= 4)} (its best: ${r.transformers_js_16_best})`);
  console.log(`  vs_transformers_js_16_sequential | ${f(r.vs_transformers_js_16_sequential, 2).padStart(6)} |`);
  console.log(`  vs_transformers_js_16_mixed      | ${f(r.vs_transformers_js_16_mixed, 2).padStart(6)} | ≥ 4    ${ok(r.vs_transformers_js_16_mixed >= 4)} (Poisson arrivals; its best: ${r.transformers_js_16_mixed_best}; all at t = 0: ${f(r.vs_transformers_js_16_mixed_burst, 2)})`);
  console.log(`  overhead_share_32                | ${f(r.overhead_share_32, 3).padStart(6)} | ≤ 0.10 ${ok(r.overhead_share_32 <= 0.1)} (temperature ${TEMPERATURE}, top_k ${TOP_K})`);
  console.log(`  overhead_share_32, defaults      | ${f(r.overhead_share_32_default_sampling, 3).padStart(6)} | ≤ 0.10 ${ok(r.overhead_share_32_default_sampling <= 0.1)} (temperature 1, no top_k: ${f(r.engine_32_default_sampling.schedule_sample_emit_ms, 1)} ms of a ${f(r.engine_32_default_sampling.step_ms, 1)} ms step)`);
  const hits = r.prefix_cache_hit_tokens as Record<string, number[]>;
  console.log(`  prefix-cache hit tokens per load (rounds): ${Object.entries(hits).map(([k, v]) => `${k}: ${v.join("/")}`).join(", ")}`);
  console.log(`  event_loop_p99_ms                | ${f(r.event_loop_p99_ms, 2).padStart(6)} | < 20   ${ok(r.event_loop_p99_ms < 20)} (max ${f(r.event_loop_max_ms, 1)} ms)`);
  const b = r.best_of_rounds;
  console.log(`  best of rounds (least disturbed): scaling_32_over_1 ${f(b.scaling_32_over_1, 2)}, vs_transformers_js_1 ${f(b.vs_transformers_js_1, 2)}, vs_transformers_js_16 ${f(b.vs_transformers_js_16, 2)}`);
  console.log(`    engine decode tok/s ${concurrency.map((n) => `${n}: ${f(b.engine_decode_tokens_per_sec[n])}`).join(", ")}; 16 e2e ${f(b.engine_16_e2e_tokens_per_sec)}; transformers.js 1: ${f(b.transformers_js_1_decode_tokens_per_sec)}, 16: ${f(b.transformers_js_16_best_tokens_per_sec)}`);
  printMixed(r.mixed_16);
  console.log(`\n  KV blocks in use at 32 sequences: peak ${r.kv_blocks_used_peak_at_32} (${r.kv_blocks_needed_at_32} needed for 32 × ${PROMPT_TOKENS + OUTPUT_TOKENS} tokens; ${r.kv_block_bytes} B per block)`);
}

function printMixed(m: ReturnType<typeof mixedResult>): void {
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "—");
  const s = (ms: number) => f(ms / 1000, 1);
  const w = m.workload;
  console.log(`\nmixed serving workload "${w.shape}": ${w.count} requests (seed ${w.seed}), prompts ${w.prompt.min}–${w.prompt.max}, outputs ${w.output.min}–${w.output.max} tokens (skew ${w.skew}), ${w.totalOutputTokens} output tokens, eos banned`);
  console.log(`  prompt tokens ${w.promptTokens.join(" ")}`);
  console.log(`  max tokens    ${w.maxTokens.join(" ")}`);
  console.log(`  Poisson arrivals at ${w.arrivalsPerSec}/s: last at ${s(w.poissonArrivalsMs[w.poissonArrivalsMs.length - 1])} s; burst: all at t = 0`);
  console.log("  arrivals | server                                 |  tok/s | makespan s | latency p50 / p90 / max s | TTFT p50 / p90 s | in flight | ≤2 in flight");
  for (const v of ["poisson", "burst"] as const) {
    const row = (name: string, x: ServingFigures) =>
      console.log(
        `  ${v.padEnd(8)} | ${name.padEnd(38)} | ${f(x.tokensPerSec).padStart(6)} | ${s(x.makespanMs).padStart(10)} | ${`${s(x.latencyP50Ms)} / ${s(x.latencyP90Ms)} / ${s(x.latencyMaxMs)}`.padStart(25)} | ${`${s(x.ttftP50Ms)} / ${s(x.ttftP90Ms)}`.padStart(16)} | ${f(x.meanInFlight).padStart(9)} | ${f(x.tailShareAtMost2 * 100, 0).padStart(11)}%`,
      );
    row("our engine", m[v].engine);
    for (const t of m[v].transformers_js) row(`transformers.js ${t.strategy}${t.strategy === m[v].transformers_js_best ? " *" : ""}`, t);
  }
  console.log("  (* its best strategy; transformers.js groups are generated once, back to back, and placed on each arrival timeline)");
  for (const v of ["poisson", "burst"] as const) {
    const e = m.engine_work[v];
    console.log(`  our engine, ${v}: ${e.steps} steps, ${f(e.tokens_per_step)} tokens/step, busy ${f(e.busy_share * 100, 0)}% of the makespan, session.run ${f(e.session_run_share_of_step * 100, 0)}% / sampler ${f(e.sampler_share_of_step * 100, 0)}% of step time, ${e.preemptions} preemptions`);
  }
  for (const t of m.transformers_js_work) {
    console.log(`  transformers.js ${t.strategy}: ${f(t.generate_s)} s generating, ${f(t.prefill_share * 100, 0)}% of it prefill (${t.prompt_tokens_computed} prompt tokens computed for ${t.prompt_tokens_real}), ${f(t.useful_row_share * 100, 0)}% of ${t.row_steps_computed} decoded rows useful`);
  }
  for (const v of ["poisson", "burst"] as const) {
    const x = m[v];
    console.log(`  ${v}: ours ÷ its best (${x.transformers_js_best}) ${f(x.ratio, 2)}× tokens/s; its latency ÷ ours p50 ${f(x.transformers_js_best_latency_p50_over_ours, 1)}×, p90 ${f(x.transformers_js_best_latency_p90_over_ours, 1)}×`);
  }
}

await main();
