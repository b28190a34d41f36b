/**
 * `npm run bench:phi4-layer [-- --dtypes fp32,int8,int4] [--contexts 1024,2048] [--steps 3] [--rounds 2]
 *   [--threads N] [--models-dir DIR] [--no-reference] [--small] [--json]`
 *
 * Decode on a model whose layers have Phi-4's exact shape (hidden 5120, 40/10 heads, head 128,
 * intermediate 17920, vocab 100352) but only 2 of its 40 layers, so it fits a small machine. Per dtype:
 *  - decode step at 1 and 16 streams with `contexts` tokens of past per stream (each stream its own
 *    cache blocks; the cache is not prefilled, attention costs the same over any values);
 *  - time per layer, final norm + lm_head, and the rest, from onnxruntime's per-operator profile
 *    (operators are attributed to the layer whose weights they read, fused ones by execution order);
 *  - its logprob error against the float64 reference forward pass on the same seeded weights
 *    (an 8-token prompt and 3 decode steps: 4 positions, every vocabulary entry).
 * Models are built once into --models-dir (default: the OS temp dir; kept, so a rerun skips the build).
 * Each round loads one dtype at a time (fp32 alone is 6.8 GB of weights) and measures every shape;
 * figures are medians over rounds, dtypes alternating within a round so load swings hit all of them.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import onnxProto from "onnx-proto";
import { tinyConfig } from "../gpu-node/model/tiny-model.ts";
import { MODEL_DTYPES, type ModelDtype } from "../gpu-node/model/graph/phi3-decoder-graph.ts";
import type { Phi3Config } from "../gpu-node/model/phi3-config.ts";
import { RandomWeights } from "../gpu-node/model/random-weights.ts";
import { writeModel } from "../gpu-node/model/write-model.ts";
import { ReferencePhi3 } from "../gpu-node/model/reference/phi3-reference.ts";
import { ModelRunner } from "../gpu-node/runner/model-runner.ts";
import type { BatchRow } from "../gpu-node/runner/step-runner.ts";

const { onnx } = onnxProto;

/** Phi-4's layer shape and vocabulary, 2 layers. */
export function phi4LayerConfig(): Phi3Config {
  return tinyConfig({ numLayers: 2, hiddenSize: 5120, numHeads: 40, numKvHeads: 10, headDim: 128, intermediateSize: 17_920 });
}

const SEED = 0;
const BLOCK = 16;
const STREAMS = [1, 16];
/** The accuracy probe: fixed prompt ids spread over the vocabulary, then 3 decode tokens. */
const PROBE_PROMPT = [100, 2_000, 15_000, 31_000, 47_000, 63_000, 79_000, 95_000];
const PROBE_DECODE = [512, 4_096, 60_000];

interface ProbeError {
  /** max over positions and vocabulary of |logprob − reference logprob| */
  maxAbsLogprob: number;
  /** mean over positions and vocabulary */
  meanAbsLogprob: number;
  /** max over positions of |Δ logprob| of the reference's most likely token */
  top1AbsLogprob: number;
  /** positions where the argmax equals the reference's */
  top1Agree: string;
}

interface ShapeFigures {
  dtype: ModelDtype;
  streams: number;
  context: number;
  stepMs: number[];
  perLayerMs: number[];
  headMs: number[];
  restMs: number[];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function logSoftmax(logits: ArrayLike<number>, offset: number, n: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[offset + i]);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[offset + i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = logits[offset + i] - lse;
  return out;
}

function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** Log-probabilities of the float64 reference at the probe's 4 positions (last prompt token, 3 decodes). */
async function referenceLogprobs(config: Phi3Config): Promise<Float64Array[]> {
  const t0 = performance.now();
  const reference = await ReferencePhi3.load(config, new RandomWeights(config, SEED));
  const cache = reference.newCache();
  const out = [logSoftmax(reference.forward(cache, PROBE_PROMPT), 0, config.vocabSize)];
  for (const token of PROBE_DECODE) out.push(logSoftmax(reference.forward(cache, [token]), 0, config.vocabSize));
  process.stderr.write(`reference: ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  return out;
}

type Forward = (rows: BatchRow[], label: string) => Promise<Float32Array>;

async function probeError(forward: Forward, reference: Float64Array[], vocab: number): Promise<ProbeError> {
  const table = [0];
  const got: Float64Array[] = [];
  got.push(logSoftmax(await forward([{ tokens: PROBE_PROMPT, pastLen: 0, blockTable: table }], "probe"), 0, vocab));
  let past = PROBE_PROMPT.length;
  for (const token of PROBE_DECODE) {
    got.push(logSoftmax(await forward([{ tokens: [token], pastLen: past, blockTable: table }], "probe"), 0, vocab));
    past++;
  }
  let maxAbs = 0;
  let sumAbs = 0;
  let top1 = 0;
  let agree = 0;
  for (let p = 0; p < reference.length; p++) {
    const ref = reference[p];
    for (let i = 0; i < vocab; i++) {
      const d = Math.abs(got[p][i] - ref[i]);
      maxAbs = Math.max(maxAbs, d);
      sumAbs += d;
    }
    const best = argmax(ref);
    top1 = Math.max(top1, Math.abs(got[p][best] - ref[best]));
    if (argmax(got[p]) === best) agree++;
  }
  return { maxAbsLogprob: maxAbs, meanAbsLogprob: sumAbs / (vocab * reference.length), top1AbsLogprob: top1, top1Agree: `${agree}/${reference.length}` };
}

/** Node name → "layer N" / "head" / "rest", from the order the builder emits nodes in. */
async function nodeGroups(modelDir: string): Promise<Map<string, string>> {
  const model = onnx.ModelProto.decode(await readFile(path.join(modelDir, "model.onnx")));
  const groups = new Map<string, string>();
  let current = "rest";
  for (const node of model.graph?.node ?? []) {
    for (const input of node.input ?? []) {
      const layer = /^model\.layers\.(\d+)\./.exec(input);
      if (layer) current = `layer ${layer[1]}`;
      else if (input === "model.norm.weight") current = "head";
    }
    if (node.name) groups.set(node.name, current);
  }
  return groups;
}

interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
}

/** Per run (in order), the kernel microseconds of each group. Unknown (fused) nodes take the group of the node before. */
function groupTimesPerRun(events: ProfileEvent[], groups: Map<string, string>): Array<Map<string, number>> {
  const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts - b.ts);
  const kernels = events.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time")).sort((a, b) => a.ts - b.ts);
  const out: Array<Map<string, number>> = [];
  let k = 0;
  for (const run of runs) {
    const times = new Map<string, number>();
    let current = "rest";
    while (k < kernels.length && kernels[k].ts < run.ts) k++;
    for (; k < kernels.length && kernels[k].ts <= run.ts + run.dur; k++) {
      const node = kernels[k].name.slice(0, -"_kernel_time".length);
      current = groups.get(node) ?? current;
      times.set(current, (times.get(current) ?? 0) + kernels[k].dur);
    }
    out.push(times);
  }
  return out;
}

async function buildIfMissing(config: Phi3Config, dtype: ModelDtype, dir: string): Promise<void> {
  if (existsSync(path.join(dir, "model-config.json"))) return;
  const t0 = performance.now();
  await writeModel(config, new RandomWeights(config, SEED), { outDir: dir, dtype });
  process.stderr.write(`built ${dtype} in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
}

async function modelBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) if (name.startsWith("model.onnx")) total += (await stat(path.join(dir, name))).size;
  return total;
}


/** One load of one dtype: the probe once (first round), then every (streams, context) shape. */
async function measureDtype(
  dtype: ModelDtype,
  dir: string,
  contexts: number[],
  steps: number,
  threads: number,
  reference: Float64Array[] | null,
  profileDir: string,
): Promise<{ shapes: ShapeFigures[]; probe: ProbeError | null; rssBytes: number }> {
  const maxContext = Math.max(...contexts) + steps + 1;
  const blocksPerStream = Math.ceil(maxContext / BLOCK);
  const maxStreams = Math.max(...STREAMS);
  const profilePrefix = path.join(profileDir, `${dtype}-${Date.now()}`);
  const runner = await ModelRunner.load({
    modelDir: dir,
    numBlocks: 1 + maxStreams * blocksPerStream,
    blockSize: BLOCK,
    intraOpThreads: threads,
    profileFilePrefix: profilePrefix,
  });
  const rssBytes = process.memoryUsage().rss;
  /** The label of every session.run, in order, to match the profile's runs. */
  const runs: string[] = [];
  const forward: Forward = async (rows, label) => {
    const logits = await runner.forward(rows);
    for (let i = 0; i < runner.lastStepStats.runs; i++) runs.push(label);
    return logits;
  };
  const stepMs = new Map<string, number[]>();
  let probe: ProbeError | null = null;
  try {
    if (reference) probe = await probeError(forward, reference, runner.config.vocabSize);
    for (const context of contexts) {
      for (const streams of STREAMS) {
        const label = `${streams}@${context}`;
        const rows: BatchRow[] = Array.from({ length: streams }, (_, r) => ({
          tokens: [1000 + r],
          pastLen: context,
          blockTable: Array.from({ length: blocksPerStream }, (_, b) => 1 + r * blocksPerStream + b),
        }));
        const times: number[] = [];
        for (let s = 0; s <= steps; s++) {
          for (const row of rows) row.pastLen = context + s;
          await forward(rows, s === 0 ? "warm-up" : label);
          if (s > 0) times.push(runner.lastStepStats.totalMs);
        }
        stepMs.set(label, times);
      }
    }
  } finally {
    await runner.release();
  }
  // onnxruntime writes the profile when the session is destroyed.
  const profileFile = (await readdir(profileDir)).find((n) => n.startsWith(path.basename(profilePrefix)));
  if (!profileFile) throw new Error(`bench:phi4-layer: onnxruntime wrote no profile for ${profilePrefix}`);
  const events = JSON.parse(await readFile(path.join(profileDir, profileFile), "utf8")) as ProfileEvent[];
  await rm(path.join(profileDir, profileFile));
  const perRun = groupTimesPerRun(events, await nodeGroups(dir));
  if (perRun.length !== runs.length) throw new Error(`bench:phi4-layer: profile has ${perRun.length} runs, expected ${runs.length}`);

  const shapes: ShapeFigures[] = [];
  for (const context of contexts) {
    for (const streams of STREAMS) {
      const label = `${streams}@${context}`;
      const mine = perRun.filter((_, i) => runs[i] === label);
      const ms = (m: Map<string, number>, key: (g: string) => boolean) => [...m].filter(([g]) => key(g)).reduce((a, [, us]) => a + us, 0) / 1000;
      shapes.push({
        dtype,
        streams,
        context,
        stepMs: stepMs.get(label)!,
        perLayerMs: mine.map((m) => ms(m, (g) => g.startsWith("layer ")) / runner.config.numLayers),
        headMs: mine.map((m) => ms(m, (g) => g === "head")),
        restMs: mine.map((m) => ms(m, (g) => g === "rest")),
      });
    }
  }
  return { shapes, probe, rssBytes };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      dtypes: { type: "string", default: "fp32,int8,int4" },
      contexts: { type: "string", default: "1024,2048" },
      steps: { type: "string", default: "3" },
      rounds: { type: "string", default: "2" },
      threads: { type: "string" },
      "models-dir": { type: "string", default: path.join(os.tmpdir(), "phi4-layer-bench-models") },
      "no-reference": { type: "boolean", default: false },
      /** A quick check of the bench itself: the same measurements on layers of hidden 256. */
      small: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const fail = (m: string): never => {
    process.stderr.write(`bench:phi4-layer: ${m}\n`);
    process.exit(2);
  };
  const dtypes = values.dtypes.split(",") as ModelDtype[];
  for (const d of dtypes) if (!MODEL_DTYPES.includes(d)) fail(`--dtypes: ${d} is not one of ${MODEL_DTYPES.join(", ")}`);
  const config = values.small ? tinyConfig({ numLayers: 2, hiddenSize: 256, numHeads: 8, numKvHeads: 2, headDim: 32, intermediateSize: 896 }) : phi4LayerConfig();
  const contexts = values.contexts.split(",").map(Number);
  if (contexts.some((c) => !Number.isInteger(c) || c < 1 || c + 16 > config.contextLength)) fail(`--contexts must be integers in 1..${config.contextLength - 16}`);
  const steps = Number(values.steps);
  const rounds = Number(values.rounds);
  const threads = values.threads ? Number(values.threads) : os.availableParallelism();
  if (![steps, rounds, threads].every((n) => Number.isInteger(n) && n >= 1)) fail("--steps, --rounds and --threads must be positive integers");

  const modelsDir = values["models-dir"];
  const dirOf = (d: ModelDtype) => path.join(modelsDir, d);
  await mkdir(modelsDir, { recursive: true });
  const profileDir = path.join(modelsDir, "profiles");
  await mkdir(profileDir, { recursive: true });
  const loadAverageAtStart = os.loadavg()[0];
  const startedAt = new Date().toISOString();

  // The float64 reference first, on its own: it holds 6.8 GB of weights, released before any model loads.
  let reference: Float64Array[] | null = values["no-reference"] ? null : await referenceLogprobs(config);
  global.gc?.();
  for (const d of dtypes) await buildIfMissing(config, d, dirOf(d));

  const all: ShapeFigures[] = [];
  const probes: Partial<Record<ModelDtype, ProbeError>> = {};
  const rss: Partial<Record<ModelDtype, number>> = {};
  const weights: Partial<Record<ModelDtype, number>> = {};
  for (const d of dtypes) weights[d] = await modelBytes(dirOf(d));
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? dtypes : [...dtypes].reverse();
    for (const d of order) {
      const m = await measureDtype(d, dirOf(d), contexts, steps, threads, r === 0 ? reference : null, profileDir);
      if (m.probe) probes[d] = m.probe;
      rss[d] = Math.max(rss[d] ?? 0, m.rssBytes);
      for (const s of m.shapes) {
        const prev = all.find((x) => x.dtype === s.dtype && x.streams === s.streams && x.context === s.context);
        if (!prev) all.push(s);
        else for (const k of ["stepMs", "perLayerMs", "headMs", "restMs"] as const) prev[k].push(...s[k]);
      }
      process.stderr.write(`round ${r + 1}: ${d} done (load average ${os.loadavg()[0].toFixed(1)})\n`);
    }
  }
  reference = null;

  const loadAverageAtEnd = os.loadavg()[0];
  const summary = all.map((s) => ({
    dtype: s.dtype,
    streams: s.streams,
    context: s.context,
    stepMs: median(s.stepMs),
    tokensPerSec: (s.streams * 1000) / median(s.stepMs),
    perLayerMs: median(s.perLayerMs),
    headMs: median(s.headMs),
    restMs: median(s.restMs),
    samples: s.stepMs.length,
  }));
  if (values.json) {
    console.log(JSON.stringify({ bench: "phi4-layer", config, threads, cores: os.availableParallelism(), startedAt, loadAverageAtStart, loadAverageAtEnd, rounds, steps, weights, rss, probes, summary }));
    return;
  }
  const gib = (b = 0) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  console.log(`bench:phi4-layer — 2 Phi-4-shaped layers, vocab ${config.vocabSize}, ${threads} intra-op threads, ${rounds} rounds × ${steps} steps, load average ${loadAverageAtStart.toFixed(1)} → ${loadAverageAtEnd.toFixed(1)}`);
  for (const d of dtypes) {
    const p = probes[d];
    console.log(`\n${d}: weights ${gib(weights[d])}, RSS after load ${gib(rss[d])}`);
    if (p) console.log(`  logprob error vs float64 reference: max ${p.maxAbsLogprob.toExponential(2)}, mean ${p.meanAbsLogprob.toExponential(2)}, top-1 token ${p.top1AbsLogprob.toExponential(2)}, argmax agrees ${p.top1Agree}`);
    console.log("  streams | context | step ms | tokens/s | per layer ms | lm_head+norm ms | rest ms");
    for (const s of summary.filter((x) => x.dtype === d)) {
      console.log(
        `  ${String(s.streams).padStart(7)} | ${String(s.context).padStart(7)} | ${s.stepMs.toFixed(0).padStart(7)} | ${s.tokensPerSec.toFixed(2).padStart(8)} | ${s.perLayerMs.toFixed(1).padStart(12)} | ${s.headMs.toFixed(1).padStart(15)} | ${s.restMs.toFixed(1).padStart(7)}`,
      );
    }
  }
}

await main();
