/**
 * `npm run bench:device [-- --tiny] [--layers A,B] [--dtypes fp16,int4] [--batches 1,8,32] [--contexts 512,2048]
 *  [--prefill 512,2048] [--steps N] [--warmup N] [--block-size N] [--gpu h100|h200] [--out DIR] [--work DIR]`
 *
 * The device layout on a GPU (onnxruntime-node's WebGPU execution provider over Vulkan), Phi-4's shape:
 * hidden 5120, 40/10 heads of 128, intermediate 17920, vocab 100352, in fp16 and int4. For each dtype it
 * builds the model at two layer counts (random weights made here, nothing carried), then measures
 *  - decode ms/step at each batch × context (every row has its own `context` tokens of cache, one new token),
 *    rows sampled from their ranked candidates, and at the shortest context with rows that need their whole
 *    logits row back,
 *  - prefill tokens/s of one prompt of each length,
 * and extends each figure to Phi-4's 40 layers along the line through the two layer counts (slope = one
 * layer, intercept = embedding, lm_head, TopK and per-run overhead). Each figure is printed beside its floor:
 * the bytes the step must move through HBM (weights once, the batch's KV) at 3.35 TB/s (H100) and
 * 4.8 TB/s (H200), and for prefill also the matrix work at the dense fp16 rate (bench/device/hbm-floor.ts).
 * The result goes to DIR/bench-device.json, rewritten after each model so an interrupted run keeps what it
 * measured, and the printed lines to DIR/bench-device.log (DIR: --out, else $BENCH_OUT_DIR, else
 * .bench-out/device).
 *
 * `--tiny` runs the same bench on a tiny shape (hidden 64, 4/2 heads of 16, intermediate 128, vocab 4096;
 * 1 and 3 layers; contexts and prompts of 64 and 256; 2 timed steps): what this repository's test runs on
 * a CPU Vulkan driver (Mesa lavapipe), where the figures mean nothing but every path of the bench runs.
 * On a machine without Node.js: `npm run bench:device:bundle` here, then bench/device/launch.sh there.
 */
import { spawnSync } from "node:child_process";
import { createWriteStream, rmSync, type WriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { PHI4_CONFIG, type Phi3Config } from "../gpu-node/model/phi3-config.ts";
import { writeModel } from "../gpu-node/model/write-model.ts";
import { GPUS, decodeFloor, extrapolateToLayers, prefillFloor, type Floor, type GpuId, type WeightDtype } from "./device/hbm-floor.ts";
import { PooledRandomWeights } from "./device/pooled-random-weights.ts";
import { DeviceRunner } from "../gpu-node/runner/device-runner.ts";
import { MIN_DEVICE_BLOCK_SIZE } from "../gpu-node/runner/execution-provider.ts";
import { LogitsNeed, type BatchRow } from "../gpu-node/runner/step-runner.ts";

const RESULT_FILE = "bench-device.json";
/** What the bench prints, also kept beside the JSON (a device call returns only the tail of the output). */
const LOG_FILE = "bench-device.log";
const TARGET_LAYERS = PHI4_CONFIG.numLayers;

interface BenchOptions {
  shape: "phi4" | "tiny";
  layers: [number, number];
  dtypes: WeightDtype[];
  batches: number[];
  contexts: number[];
  prefill: number[];
  steps: number;
  warmup: number;
  blockSize: number;
  gpu: GpuId | null;
  out: string;
  work: string;
}

type RowsBack = "candidates" | "whole";

/** Raw figures of one model (one dtype at one layer count). */
interface RunFigures {
  dtype: WeightDtype;
  layers: number;
  buildSec: number;
  loadSec: number;
  fileBytes: number;
  prefill: { tokens: number; ms: number; floor: Floor }[];
  decode: {
    batch: number;
    context: number;
    /** What each row brings back: its ranked candidates, or its whole logits row. */
    rows: RowsBack;
    ms: number;
    /** Median time inside session.run; the rest is building inputs and reading the ranked rows. */
    sessionRunMs: number;
    bytesToDevicePerStep: number;
    bytesFromDevicePerStep: number;
    floor: Floor;
  }[];
}

interface Extrapolated {
  ms: number;
  perLayerMs: number;
  fixedMs: number;
  floor: Floor;
  /** floor / measured: the share of the hardware's speed reached (1 = at the floor). */
  ofFloor: Record<GpuId, number>;
  /** False when the larger model was not slower (timing noise swamped the layers): the 40-layer figure means nothing. */
  valid: boolean;
}

interface BenchResult {
  bench: "device";
  schema: 1;
  /** False while (or if the run ended before) every dtype × layer count was measured. */
  complete: boolean;
  date: string;
  node: string;
  onnxruntime: string;
  executionProvider: "webgpu";
  vulkanDriverFiles: string | null;
  gpu: { id: GpuId | null; name: string | null };
  shape: { name: "phi4" | "tiny" } & Omit<Phi3Config, "numLayers" | "eosTokenIds" | "padTokenId">;
  layerCounts: [number, number];
  extrapolatedTo: number;
  blockSize: number;
  steps: number;
  warmup: number;
  gpus: typeof GPUS;
  runs: RunFigures[];
  results: {
    dtype: WeightDtype;
    decode: ({ batch: number; context: number; rows: RowsBack; tokensPerSec: number } & Extrapolated)[];
    prefill: ({ tokens: number; tokensPerSec: number } & Extrapolated)[];
    /** Aggregate decode tokens/s at the largest batch over the smallest, per context (target: ≥ 15 for 32 over 1). */
    batchScaling: { context: number; batch: number; over: number; ratio: number; valid: boolean }[];
  }[];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * The tiny shape: Phi-4's RoPE and context, small everything else. Its vocabulary is small too, so a CPU
 * Vulkan driver spends its time in the layers rather than in lm_head and TopK. (Not the CLI's tinyConfig:
 * importing a CLI module into the bundle would run that CLI.)
 */
const TINY_SHAPE = { hiddenSize: 64, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, vocabSize: 4096, eosTokenIds: [4095], padTokenId: 4094 };

function shapeConfig(shape: "phi4" | "tiny", layers: number): Phi3Config {
  return { ...PHI4_CONFIG, ...(shape === "tiny" ? TINY_SHAPE : {}), numLayers: layers };
}

/** Token ids spread over the vocabulary. */
function tokens(n: number, vocab: number, salt: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + salt * 104729 + 13) % vocab);
}

interface Timed {
  ms: number;
  sessionRunMs: number;
  bytesToDevice: number;
  bytesFromDevice: number;
}

/**
 * Median wall time of `steps` steps after `warmup` (first runs of a shape compile its shaders), through
 * the runner's step-loop entry as the engine calls it, every row sampled from its ranked candidates.
 */
async function timeSteps(runner: DeviceRunner, rows: BatchRow[], warmup: number, steps: number, advance: boolean): Promise<Timed> {
  const base = rows.map((r) => r.pastLen);
  const times: number[] = [];
  const inRun: number[] = [];
  for (let s = 0; s < warmup + steps; s++) {
    if (advance) for (let r = 0; r < rows.length; r++) rows[r].pastLen = base[r] + s; // each step appends one token
    const t0 = performance.now();
    await runner.run(rows);
    const ms = performance.now() - t0;
    if (s < warmup) continue;
    times.push(ms);
    inRun.push(runner.lastStepStats.sessionRunMs);
  }
  const st = runner.lastStepStats;
  return { ms: median(times), sessionRunMs: median(inRun), bytesToDevice: st.bytesToDevice, bytesFromDevice: st.bytesFromDevice };
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(path.join(dir, name))).size;
  return total;
}

async function benchOneModel(o: BenchOptions, dtype: WeightDtype, layers: number, log: (line: string) => void): Promise<RunFigures> {
  const config = shapeConfig(o.shape, layers);
  const bs = o.blockSize;
  const dir = path.join(o.work, `${o.shape}-${dtype}-${layers}`);
  const t0 = performance.now();
  await writeModel(config, new PooledRandomWeights(config, layers), { outDir: dir, dtype, layout: "device" });
  const buildSec = (performance.now() - t0) / 1000;
  const fileBytes = await dirBytes(dir);

  const rowBlocks = (context: number) => Math.ceil((context + o.warmup + o.steps + 1) / bs);
  const numBlocks = Math.max(...o.batches.flatMap((b) => o.contexts.map((c) => b * rowBlocks(c))), ...o.prefill.map((t) => Math.ceil(t / bs)));
  const t1 = performance.now();
  const runner = await DeviceRunner.load({ modelDir: dir, numBlocks, blockSize: bs });
  const loadSec = (performance.now() - t1) / 1000;
  log(`${dtype} × ${layers} layers: built in ${buildSec.toFixed(1)} s (${(fileBytes / 2 ** 30).toFixed(2)} GiB), loaded in ${loadSec.toFixed(1)} s, ${numBlocks} KV blocks of ${bs}`);
  try {
    const prefill: RunFigures["prefill"] = [];
    for (const T of o.prefill) {
      const row: BatchRow = { tokens: tokens(T, config.vocabSize, 0), needs: LogitsNeed.Candidates, pastLen: 0, blockTable: Array.from({ length: Math.ceil(T / bs) }, (_, i) => i) };
      const { ms } = await timeSteps(runner, [row], o.warmup, o.steps, false);
      prefill.push({ tokens: T, ms, floor: prefillFloor(config, dtype, T) });
      log(`  prefill ${T}: ${ms.toFixed(2)} ms`);
    }
    // Every batch × context with rows sampled from their ranked candidates (greedy, top_k ≤ 64, and most plain
    // sampling steps), then every batch at the shortest context with rows that need the whole vocabulary
    // (top_k > 64, structured outputs, a plain draw in a row's tail): those bring their full logits row back.
    const cases = [
      ...o.contexts.flatMap((context) => o.batches.map((batch) => ({ batch, context, rows: "candidates" as const }))),
      ...o.batches.map((batch) => ({ batch, context: Math.min(...o.contexts), rows: "whole" as const })),
    ];
    const decode: RunFigures["decode"] = [];
    for (const { batch, context, rows: kind } of cases) {
      const per = rowBlocks(context);
      const rows: BatchRow[] = Array.from({ length: batch }, (_, r) => ({
        tokens: tokens(1, config.vocabSize, r + 1),
        needs: kind === "candidates" ? LogitsNeed.Candidates : LogitsNeed.FullRow,
        pastLen: context,
        blockTable: Array.from({ length: per }, (_, i) => r * per + i),
      }));
      const t = await timeSteps(runner, rows, o.warmup, o.steps, true);
      decode.push({
        batch,
        context,
        rows: kind,
        ms: t.ms,
        sessionRunMs: t.sessionRunMs,
        bytesToDevicePerStep: t.bytesToDevice,
        bytesFromDevicePerStep: t.bytesFromDevice,
        floor: decodeFloor(config, dtype, batch, context),
      });
      log(`  decode batch ${batch} context ${context}, ${kind} rows: ${t.ms.toFixed(2)} ms/step (${t.sessionRunMs.toFixed(2)} in session.run), ${t.bytesToDevice} B up, ${t.bytesFromDevice} B down`);
    }
    return { dtype, layers, buildSec, loadSec, fileBytes, prefill, decode };
  } finally {
    await runner.release();
    await rm(dir, { recursive: true, force: true });
  }
}

function extrapolate(a: number, b: number, o: BenchOptions, floor: Floor): Extrapolated {
  const [la, lb] = o.layers;
  const fit = extrapolateToLayers({ layers: la, value: a }, { layers: lb, value: b }, TARGET_LAYERS);
  const ofFloor = {} as Record<GpuId, number>;
  for (const id of Object.keys(GPUS) as GpuId[]) ofFloor[id] = floor.ms[id] / fit.value;
  return { ms: fit.value, perLayerMs: fit.perLayer, fixedMs: fit.fixed, floor, ofFloor, valid: fit.perLayer > 0 && fit.value > 0 };
}

function summarize(o: BenchOptions, runs: RunFigures[]): BenchResult["results"] {
  const full = shapeConfig(o.shape, TARGET_LAYERS);
  return o.dtypes.map((dtype) => {
    const [ra, rb] = o.layers.map((l) => runs.find((r) => r.dtype === dtype && r.layers === l)!);
    const decode = ra.decode.map((d, i) => {
      const e = extrapolate(d.ms, rb.decode[i].ms, o, decodeFloor(full, dtype, d.batch, d.context));
      return { batch: d.batch, context: d.context, rows: d.rows, tokensPerSec: (d.batch * 1000) / e.ms, ...e };
    });
    const prefill = ra.prefill.map((p, i) => {
      const e = extrapolate(p.ms, rb.prefill[i].ms, o, prefillFloor(full, dtype, p.tokens));
      return { tokens: p.tokens, tokensPerSec: (p.tokens * 1000) / e.ms, ...e };
    });
    const lo = Math.min(...o.batches);
    const hi = Math.max(...o.batches);
    const batchScaling = o.contexts.map((context) => {
      const at = (b: number) => decode.find((d) => d.batch === b && d.context === context && d.rows === "candidates")!;
      return { context, batch: hi, over: lo, ratio: at(hi).tokensPerSec / at(lo).tokensPerSec, valid: at(hi).valid && at(lo).valid };
    });
    return { dtype, decode, prefill, batchScaling };
  });
}

function detectGpu(): { id: GpuId | null; name: string | null } {
  const r = spawnSync("nvidia-smi", ["--query-gpu=name", "--format=csv,noheader"], { encoding: "utf8" });
  const name = r.status === 0 ? r.stdout.split("\n")[0].trim() || null : null;
  const id: GpuId | null = name && /H200/i.test(name) ? "h200" : name && /H100/i.test(name) ? "h100" : null;
  return { id, name };
}

function printTables(r: BenchResult, log: (line: string) => void): void {
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const gpu = r.gpu.id;
  const ms = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3));
  const row = (label: string, x: Extrapolated, perSec: number): string => {
    const fit = `${ms(x.perLayerMs).padStart(12)} | ${ms(x.fixedMs).padStart(8)} | ${ms(x.floor.ms.h100).padStart(13)} | ${ms(x.floor.ms.h200).padStart(13)}`;
    if (!x.valid) return `${label} | ${"—".padStart(7)} | ${"—".padStart(7)} | ${fit} | — (more layers were not slower: noise)`;
    const of = gpu ? pct(x.ofFloor[gpu]) : `${pct(x.ofFloor.h100)} / ${pct(x.ofFloor.h200)}`;
    return `${label} | ${ms(x.ms).padStart(7)} | ${perSec.toFixed(0).padStart(7)} | ${fit} | ${of}`;
  };
  log("");
  log(`bench:device — ${r.shape.name} shape, measured at ${r.layerCounts.join(" and ")} layers, extended to ${r.extrapolatedTo}; GPU: ${r.gpu.name ?? "none detected"}`);
  log("floors: weights once + the batch's KV through HBM at H100 3.35 TB/s, H200 4.8 TB/s (prefill: or the fp16 matrix work at 989 TFLOP/s, whichever is slower)");
  for (const d of r.results) {
    log("");
    log(`${`${d.dtype}, ${r.extrapolatedTo} layers`.padEnd(26)} |      ms |   tok/s | per layer ms | fixed ms | floor H100 ms | floor H200 ms | of floor${gpu ? ` (${gpu.toUpperCase()})` : " H100 / H200"}`);
    for (const x of d.decode) log(row(`decode b${x.batch} ctx ${x.context}${x.rows === "whole" ? " whole" : ""}`.padEnd(26), x, x.tokensPerSec));
    for (const x of d.prefill) log(row(`prefill ${x.tokens}`.padEnd(26), x, x.tokensPerSec));
    log(`("whole": every row also brings its full ${r.shape.vocabSize}-logit row back, as top_k > 64, structured outputs or a plain draw landing in a row's tail need)`);
    for (const s of d.batchScaling) {
      log(`aggregate decode tok/s, batch ${s.batch} over ${s.over}, context ${s.context}: ${s.valid ? `${s.ratio.toFixed(1)}×` : "—"} (target ≥ 15× for 32 over 1)`);
    }
  }
}

/**
 * Runs every dtype × layer count, rewriting the JSON after each model: a GPU machine's lease or a call's
 * time limit can end the run, and the models finished by then still come back (`complete: false`).
 */
async function runDeviceBench(o: BenchOptions, log: (line: string) => void): Promise<BenchResult> {
  await mkdir(o.work, { recursive: true });
  await mkdir(o.out, { recursive: true });
  const detected = detectGpu();
  const gpu = o.gpu ? { id: o.gpu, name: detected.name ?? GPUS[o.gpu].name } : detected;
  const { numLayers: _l, eosTokenIds: _e, padTokenId: _p, ...shape } = shapeConfig(o.shape, TARGET_LAYERS);
  const runs: RunFigures[] = [];
  const result: BenchResult = {
    bench: "device",
    schema: 1,
    complete: false,
    date: new Date().toISOString(),
    node: process.version,
    onnxruntime: ort.env.versions.common,
    executionProvider: "webgpu",
    vulkanDriverFiles: process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES ?? null,
    gpu,
    shape: { name: o.shape, ...shape },
    layerCounts: o.layers,
    extrapolatedTo: TARGET_LAYERS,
    blockSize: o.blockSize,
    steps: o.steps,
    warmup: o.warmup,
    gpus: GPUS,
    runs,
    results: [],
  };
  const file = path.join(o.out, RESULT_FILE);
  for (const dtype of o.dtypes) {
    for (const layers of o.layers) {
      runs.push(await benchOneModel(o, dtype, layers, log));
      result.results = summarize({ ...o, dtypes: o.dtypes.filter((d) => o.layers.every((l) => runs.some((r) => r.dtype === d && r.layers === l))) }, runs);
      result.complete = runs.length === o.dtypes.length * o.layers.length;
      await writeFile(file, JSON.stringify(result, null, 2) + "\n");
    }
  }
  printTables(result, log);
  log(`\nwrote ${file}`);
  return result;
}

function parseBenchArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      tiny: { type: "boolean", default: false },
      layers: { type: "string" },
      dtypes: { type: "string", default: "fp16,int4" },
      batches: { type: "string", default: "1,8,32" },
      contexts: { type: "string" },
      prefill: { type: "string" },
      steps: { type: "string" },
      warmup: { type: "string" },
      "block-size": { type: "string", default: String(MIN_DEVICE_BLOCK_SIZE) },
      gpu: { type: "string" },
      out: { type: "string" },
      work: { type: "string" },
    },
  });
  if (positionals.length > 0) throw new Error(`unexpected argument ${positionals[0]}`);
  const ints = (flag: string, v: string, min: number): number[] => {
    const xs = v.split(",").map((s) => s.trim());
    if (xs.some((s) => !/^\d+$/.test(s) || Number(s) < min || !Number.isSafeInteger(Number(s)))) throw new Error(`--${flag} must be a comma-separated list of integers >= ${min}, got ${JSON.stringify(v)}`);
    return xs.map(Number);
  };
  const int = (flag: string, v: string, min: number): number => {
    const xs = ints(flag, v, min);
    if (xs.length !== 1) throw new Error(`--${flag} takes one integer, got ${JSON.stringify(v)}`);
    return xs[0];
  };
  const shape = values.tiny ? "tiny" : "phi4";
  const layers = ints("layers", values.layers ?? (values.tiny ? "1,3" : "2,4"), 1);
  if (layers.length !== 2 || layers[0] === layers[1]) throw new Error(`--layers takes two different layer counts (the figures are extended to ${TARGET_LAYERS} along the line through them), got ${JSON.stringify(values.layers)}`);
  const dtypes = values.dtypes.split(",").map((s) => s.trim());
  for (const d of dtypes) if (d !== "fp16" && d !== "int4") throw new Error(`--dtypes must list fp16 and/or int4, got ${JSON.stringify(values.dtypes)}`);
  let gpu: GpuId | null = null;
  if (values.gpu !== undefined) {
    if (values.gpu !== "h100" && values.gpu !== "h200") throw new Error(`--gpu must be h100 or h200, got ${JSON.stringify(values.gpu)}`);
    gpu = values.gpu;
  }
  const batches = ints("batches", values.batches, 1);
  const contexts = ints("contexts", values.contexts ?? (values.tiny ? "64,256" : "512,2048"), 1);
  const o: BenchOptions = {
    shape,
    layers: [layers[0], layers[1]],
    dtypes: [...new Set(dtypes)] as WeightDtype[],
    batches,
    contexts,
    prefill: ints("prefill", values.prefill ?? (values.tiny ? "64,256" : "512,2048"), 1),
    steps: int("steps", values.steps ?? (values.tiny ? "2" : "10"), 1),
    warmup: int("warmup", values.warmup ?? (values.tiny ? "1" : "2"), 0),
    blockSize: int("block-size", values["block-size"], 1),
    gpu,
    out: path.resolve(values.out ?? env.BENCH_OUT_DIR ?? ".bench-out/device"),
    work: values.work ? path.resolve(values.work) : "",
  };
  if (o.blockSize < MIN_DEVICE_BLOCK_SIZE || (o.blockSize & (o.blockSize - 1)) !== 0) throw new Error(`--block-size must be a power of two >= ${MIN_DEVICE_BLOCK_SIZE} (WebGPU PagedAttention), got ${o.blockSize}`);
  const context = shapeConfig(shape, 1).contextLength;
  const longest = Math.max(...contexts) + o.warmup + o.steps + 1;
  if (longest > context) throw new Error(`--contexts: ${Math.max(...contexts)} plus ${o.warmup + o.steps + 1} decode steps exceeds the model's context of ${context}`);
  if (Math.max(...o.prefill) > context) throw new Error(`--prefill: ${Math.max(...o.prefill)} exceeds the model's context of ${context}`);
  return o;
}

async function main(): Promise<void> {
  let o: BenchOptions;
  try {
    o = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench:device: ${(err as Error).message}\n`);
    process.exit(2);
  }
  let logFile: WriteStream | undefined;
  const tmp = o.work ? undefined : await mkdtemp(path.join(os.tmpdir(), "bench-device-"));
  // Phi-4-sized model files are gigabytes: an interrupted run must not leave them in the temp dir.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
  try {
    await mkdir(o.out, { recursive: true });
    logFile = createWriteStream(path.join(o.out, LOG_FILE));
    await runDeviceBench({ ...o, work: o.work || tmp! }, (line) => {
      console.log(line);
      logFile?.write(line + "\n");
    });
  } finally {
    logFile?.end();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

await main();
