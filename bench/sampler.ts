/**
 * Micro-benchmark of the sampler on Phi-4's 100,352-entry vocabulary: µs per sampled token.
 *   npx tsx bench/sampler.ts          a table
 *   npx tsx bench/sampler.ts --json   one JSON object
 * Each sample gets a fresh copy of the row (the sampler writes bias/penalties into it); the copy's own
 * cost is measured alone and subtracted.
 * "preselected" rows: the engine's batched path (logits-preselector.ts) on a batch of 32 rows — prepare
 * each row, one onnxruntime TopK run (2 intra-op threads), draw each row — divided by 32.
 */
import { VOCAB_SIZE } from "../shared/limits.ts";
import { seedWords, uniformFromWords } from "../gpu-node/engine/prng.ts";
import { applyBiasAndPenalties } from "../gpu-node/engine/logit-adjustments.ts";
import { drawsFromCandidates, Sampler } from "../gpu-node/engine/sampler.ts";
import { DEFAULT_SAMPLING, type SamplingParams } from "../gpu-node/engine/sampling-params.ts";
import { TokenCounts } from "../gpu-node/engine/token-counts.ts";
import { LogitsPreselector } from "../gpu-node/engine/logits-preselector.ts";

const json = process.argv.includes("--json");
const ITERATIONS = 400;
const WARMUP = 100;

/**
 * Two shapes of seeded logits: "peaked" (a confident step: the top token holds about half the mass, the
 * top_p=0.9 nucleus is a handful of tokens) and "flat" (an uncertain step: a broad body holding a third of
 * the mass, so top_p=0.9 keeps tens of thousands of tokens).
 */
function logits(seed: number, shape: "peaked" | "flat"): Float32Array {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4_294_967_296);
  const row = new Float32Array(VOCAB_SIZE);
  const spread = shape === "peaked" ? 3 : 4;
  for (let i = 0; i < VOCAB_SIZE; i++) row[i] = (rand() + rand() + rand() - 1.5) * spread;
  for (let j = 0; j < 30; j++) row[Math.floor(rand() * VOCAB_SIZE)] = (shape === "peaked" ? 14 : 8) + rand() * 6;
  if (shape === "peaked") row[Math.floor(rand() * VOCAB_SIZE)] = 23;
  return row;
}

const shapes = ["peaked", "flat"] as const;
const rows = { peaked: [1, 2, 3, 4].map((k) => logits(k, "peaked")), flat: [1, 2, 3, 4].map((k) => logits(k, "flat")) };
const work = new Float32Array(VOCAB_SIZE);
const sampler = new Sampler(VOCAB_SIZE);
const [seedLo, seedHi] = seedWords(20261122n);

const prompt = Array.from({ length: 2000 }, (_, i) => (i * 7919) % VOCAB_SIZE);
const history = new TokenCounts(prompt);
for (let i = 0; i < 500; i++) history.add((i * 104729) % 3000);
const bias: Record<number, number> = {};
for (let i = 0; i < 50; i++) bias[i * 1000] = i % 2 ? 5 : -100;

const cases: Array<{ name: string; params: SamplingParams }> = [
  { name: "greedy (temperature 0)", params: { ...DEFAULT_SAMPLING, temperature: 0 } },
  { name: "top_k=50", params: { ...DEFAULT_SAMPLING, topK: 50 } },
  { name: "top_p=0.9", params: { ...DEFAULT_SAMPLING, topP: 0.9 } },
  { name: "temperature 1 (no truncation)", params: { ...DEFAULT_SAMPLING } },
  { name: "min_p=0.05", params: { ...DEFAULT_SAMPLING, minP: 0.05 } },
  {
    name: "full params",
    params: {
      temperature: 0.8, topK: 50, topP: 0.9, minP: 0.05, presencePenalty: 0.5, frequencyPenalty: 0.5,
      repetitionPenalty: 1.1, logitBias: bias, logprobs: true, topLogprobs: 5,
    },
  },
  {
    name: "full params, top_p without top_k",
    params: {
      temperature: 0.8, topK: 0, topP: 0.9, minP: 0, presencePenalty: 0.5, frequencyPenalty: 0.5,
      repetitionPenalty: 1.1, logitBias: bias, logprobs: true, topLogprobs: 5,
    },
  },
];

function timeLoop(body: (i: number) => void): number[] {
  for (let i = 0; i < WARMUP; i++) body(i);
  const out: number[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = performance.now();
    body(i);
    out.push((performance.now() - t0) * 1000);
  }
  return out.sort((a, b) => a - b);
}

const median = (xs: number[]) => xs[xs.length >> 1];
const p90 = (xs: number[]) => xs[Math.floor(xs.length * 0.9)];
// On a shared machine the fastest samples are the best estimate of the uncontended cost.
const best = (xs: number[]) => xs[0];

const copyTimes = timeLoop((i) => work.set(rows.flat[i & 3]));
const copyUs = median(copyTimes);
const copyBestUs = best(copyTimes);
type Figures = { bestUs: number; medianUs: number; p90Us: number };
const results: Record<string, Record<(typeof shapes)[number], Figures>> = {};
for (const c of cases) {
  results[c.name] = {} as Record<(typeof shapes)[number], Figures>;
  for (const shape of shapes) {
    const times = timeLoop((i) => {
      work.set(rows[shape][i & 3]);
      // One row as the engine samples it: bias and penalties into the row, then the draw.
      applyBiasAndPenalties(work, 0, VOCAB_SIZE, c.params, history);
      sampler.draw(work, 0, c.params, uniformFromWords(seedLo, seedHi, 0, i));
    });
    results[c.name][shape] = {
      bestUs: +(best(times) - copyBestUs).toFixed(1),
      medianUs: +(median(times) - copyUs).toFixed(1),
      p90Us: +(p90(times) - copyUs).toFixed(1),
    };
  }
}

// The batched path: 32 rows (the engine's batch), µs per row.
const BATCH = 32;
const BATCH_ITERATIONS = 60;
const preselector = await LogitsPreselector.create(VOCAB_SIZE, 2);
const batchRows = { peaked: new Float32Array(BATCH * VOCAB_SIZE), flat: new Float32Array(BATCH * VOCAB_SIZE) };
for (const shape of shapes) for (let r = 0; r < BATCH; r++) batchRows[shape].set(rows[shape][r & 3], r * VOCAB_SIZE);
const batchWork = new Float32Array(BATCH * VOCAB_SIZE);
async function timeBatches(body: (i: number) => Promise<void>): Promise<number[]> {
  for (let i = 0; i < 10; i++) await body(i);
  const out: number[] = [];
  for (let i = 0; i < BATCH_ITERATIONS; i++) {
    const t0 = performance.now();
    await body(i);
    out.push(((performance.now() - t0) * 1000) / BATCH);
  }
  return out.sort((a, b) => a - b);
}
const batchCopy = await timeBatches(async () => batchWork.set(batchRows.flat));
const batchCases = cases.filter((c) => drawsFromCandidates(c.params, preselector.k, VOCAB_SIZE));
for (const c of batchCases) {
  const name = `${c.name}, preselected`;
  results[name] = {} as Record<(typeof shapes)[number], Figures>;
  for (const shape of shapes) {
    const times = await timeBatches(async (i) => {
      batchWork.set(batchRows[shape]);
      for (let r = 0; r < BATCH; r++) applyBiasAndPenalties(batchWork, r * VOCAB_SIZE, VOCAB_SIZE, c.params, history);
      const candidates = await preselector.run(batchWork, BATCH, c.params.logprobs);
      for (let r = 0; r < BATCH; r++) sampler.draw(batchWork, r * VOCAB_SIZE, c.params, uniformFromWords(seedLo, seedHi, r, i), candidates, r);
    });
    results[name][shape] = {
      bestUs: +(best(times) - best(batchCopy)).toFixed(1),
      medianUs: +(median(times) - median(batchCopy)).toFixed(1),
      p90Us: +(p90(times) - median(batchCopy)).toFixed(1),
    };
  }
}
await preselector.release();

const prngNs = (() => {
  const n = 200_000;
  let acc = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) acc += uniformFromWords(seedLo, seedHi, 1, i);
  const ns = ((performance.now() - t0) * 1e6) / n;
  if (acc < 0) throw new Error("unreachable");
  return +ns.toFixed(0);
})();

const [load1] = (await import("node:os")).loadavg();
const report = {
  vocab: VOCAB_SIZE, iterations: ITERATIONS, loadAverage1m: +load1.toFixed(2), rowCopyUs: +copyUs.toFixed(1),
  prngNsPerDraw: prngNs, samplerUs: results,
};
if (json) {
  console.log(JSON.stringify(report));
} else {
  console.log(`sampler on a ${VOCAB_SIZE}-token vocabulary, µs per token (${ITERATIONS} samples each, row copy subtracted; load ${load1.toFixed(2)})`);
  console.log(`${"".padEnd(42)}${"peaked logits".padEnd(27)}flat logits`);
  console.log(`${"case".padEnd(42)}${"best  median    p90".padEnd(27)}best  median    p90`);
  const cell = (f: Figures) => `${f.bestUs.toFixed(0).padStart(4)}${f.medianUs.toFixed(0).padStart(8)}${f.p90Us.toFixed(0).padStart(7)}`;
  for (const [name, r] of Object.entries(results)) console.log(`${name.padEnd(42)}${cell(r.peaked).padEnd(27)}${cell(r.flat)}`);
  console.log(`prng uniformFromWords: ${prngNs} ns per draw`);
}
