/**
 * `npm run bench:model [-- --json] [-- --models tiny,bench] [-- --threads N]`
 *
 * For the tiny model and a bench model (8 layers, hidden 1024, 16/4 heads, intermediate 3584, real vocab),
 * both built to a temp dir with seeded random weights:
 *  - prefill tokens/s for one 512-token prompt;
 *  - decode step latency at batch 1, 8, 32 with 512 tokens of past per row (rows share the prompt's
 *    blocks, as prefix-cached sequences do; attention still reads every row's 512 past tokens);
 *  - the share of each step spent outside session.run (input building, K/V write-back, logits copy);
 *  - bytes fetched from outputs per decode step, next to the KV bytes the step reads;
 *  - resident memory after loading versus the model's weight bytes.
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { RandomWeights } from "../gpu-node/model/random-weights.ts";
import { writeModel } from "../gpu-node/model/write-model.ts";
import { tinyConfig } from "../gpu-node/model/tiny-model.ts";
import type { Phi3Config } from "../gpu-node/model/phi3-config.ts";
import { ModelRunner } from "../gpu-node/runner/model-runner.ts";
import type { BatchRow } from "../gpu-node/runner/step-runner.ts";

const PROMPT = 512;
const BLOCK = 16;
const BATCHES = [1, 8, 32];

interface DecodeFigures {
  batch: number;
  stepMs: number;
  tokensPerSec: number;
  outsideRunShare: number;
  outputBytesPerStep: number;
  kvBytesReadPerStep: number;
}

interface ModelFigures {
  model: string;
  config: Pick<Phi3Config, "numLayers" | "hiddenSize" | "numHeads" | "numKvHeads" | "intermediateSize" | "vocabSize">;
  buildSec: number;
  weightBytes: number;
  rssAfterLoadBytes: number;
  rssGrowthOnLoadBytes: number;
  prefillTokensPerSec: number;
  prefillMs: number;
  decode: DecodeFigures[];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function dirBytes(d: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(d)) if (name.startsWith("model.onnx")) total += (await stat(path.join(d, name))).size;
  return total;
}

async function benchModel(name: string, config: Phi3Config, root: string, threads: number, steps: number): Promise<ModelFigures> {
  const dir = path.join(root, name);
  const t0 = performance.now();
  await writeModel(config, new RandomWeights(config, 0), { outDir: dir, dtype: "fp32" });
  const buildSec = (performance.now() - t0) / 1000;
  const weightBytes = await dirBytes(dir);
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const maxBatch = Math.max(...BATCHES);
  const promptBlocks = PROMPT / BLOCK;
  const runner = await ModelRunner.load({ modelDir: dir, numBlocks: 2 * promptBlocks + maxBatch, blockSize: BLOCK, intraOpThreads: threads });
  const rssAfterLoad = process.memoryUsage().rss;
  try {
    const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 13) % 100_000);
    const promptTable = Array.from({ length: promptBlocks }, (_, i) => i);
    // Prefill into spare blocks (warm-up first), then the real prompt blocks the decode rows share.
    const scratch = promptTable.map((b) => b + promptBlocks + maxBatch);
    await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: scratch }]);
    const prefillTimes: number[] = [];
    for (let i = 0; i < 3; i++) {
      await runner.forward([{ tokens: prompt, pastLen: 0, blockTable: promptTable }]);
      prefillTimes.push(runner.lastStepStats.totalMs);
    }
    const prefillMs = median(prefillTimes);

    const decode: DecodeFigures[] = [];
    for (const batch of BATCHES) {
      const rows: BatchRow[] = Array.from({ length: batch }, (_, r) => ({
        tokens: [1000 + r],
        pastLen: PROMPT,
        blockTable: [...promptTable, promptBlocks + r],
      }));
      const totals: number[] = [];
      const outside: number[] = [];
      let outputBytes = 0;
      for (let s = 0; s <= steps; s++) {
        for (const row of rows) row.pastLen = PROMPT + s; // each step appends one token in the row's own block
        await runner.forward(rows);
        if (s === 0) continue; // warm-up for this batch shape
        const st = runner.lastStepStats;
        totals.push(st.totalMs);
        outside.push((st.totalMs - st.sessionRunMs) / st.totalMs);
        outputBytes = st.outputBytes;
      }
      const stepMs = median(totals);
      decode.push({
        batch,
        stepMs,
        tokensPerSec: (batch * 1000) / stepMs,
        outsideRunShare: median(outside),
        outputBytesPerStep: outputBytes,
        kvBytesReadPerStep: batch * Math.ceil((PROMPT + steps) / BLOCK) * runner.kvBytesPerBlock,
      });
    }
    return {
      model: name,
      config: {
        numLayers: config.numLayers,
        hiddenSize: config.hiddenSize,
        numHeads: config.numHeads,
        numKvHeads: config.numKvHeads,
        intermediateSize: config.intermediateSize,
        vocabSize: config.vocabSize,
      },
      buildSec,
      weightBytes,
      rssAfterLoadBytes: rssAfterLoad,
      rssGrowthOnLoadBytes: rssAfterLoad - rssBefore,
      prefillTokensPerSec: (PROMPT * 1000) / prefillMs,
      prefillMs,
      decode,
    };
  } finally {
    await runner.release();
  }
}

const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;

function printTable(results: ModelFigures[], threads: number): void {
  console.log(`bench:model — onnxruntime-node CPU, ${threads} intra-op threads, fp32, block ${BLOCK}, prompt ${PROMPT}`);
  for (const m of results) {
    const c = m.config;
    console.log(`\n${m.model}: ${c.numLayers} layers, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads}, intermediate ${c.intermediateSize}, vocab ${c.vocabSize} (built in ${m.buildSec.toFixed(1)} s)`);
    console.log(`  weights ${mib(m.weightBytes)}; RSS after load ${mib(m.rssAfterLoadBytes)} (+${mib(m.rssGrowthOnLoadBytes)} on load)`);
    console.log(`  prefill ${PROMPT} tokens: ${m.prefillMs.toFixed(1)} ms, ${m.prefillTokensPerSec.toFixed(0)} tokens/s`);
    console.log("  batch | step ms | tokens/s | outside run | output bytes/step | KV bytes read/step");
    for (const d of m.decode) {
      console.log(
        `  ${String(d.batch).padStart(5)} | ${d.stepMs.toFixed(2).padStart(7)} | ${d.tokensPerSec.toFixed(0).padStart(8)} | ${(d.outsideRunShare * 100).toFixed(1).padStart(10)}% | ${String(d.outputBytesPerStep).padStart(17)} | ${String(d.kvBytesReadPerStep).padStart(18)}`,
      );
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { json: { type: "boolean", default: false }, models: { type: "string", default: "tiny,bench" }, threads: { type: "string" }, steps: { type: "string", default: "12" } },
  });
  const threads = values.threads ? Number(values.threads) : os.availableParallelism();
  const steps = Number(values.steps);
  if (!Number.isInteger(threads) || threads < 1 || !Number.isInteger(steps) || steps < 1 || steps > 15) {
    process.stderr.write("bench:model: --threads must be a positive integer and --steps 1..15\n");
    process.exit(2);
  }
  const configs: Record<string, Phi3Config> = {
    tiny: tinyConfig(),
    bench: tinyConfig({ numLayers: 8, hiddenSize: 1024, numHeads: 16, numKvHeads: 4, headDim: 64, intermediateSize: 3584 }),
  };
  const names = values.models.split(",");
  for (const n of names) {
    if (!configs[n]) {
      process.stderr.write(`bench:model: unknown model ${n} (tiny, bench)\n`);
      process.exit(2);
    }
  }
  const root = await mkdtemp(path.join(os.tmpdir(), "bench-model-"));
  try {
    const results: ModelFigures[] = [];
    for (const n of names) results.push(await benchModel(n, configs[n], root, threads, steps));
    if (values.json) console.log(JSON.stringify({ bench: "model", threads, cores: os.availableParallelism(), node: process.version, results }));
    else printTable(results, threads);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
