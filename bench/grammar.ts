/**
 * `npm run bench:grammar [-- --steps N --rounds R]`
 *
 * What constrained decoding costs per engine step at batch 32 (tiny model, Phi-4's real 100,352-token
 * vocabulary, in process):
 *  - the mask alone: 32 XGrammar matchers (a JSON schema), each step every row reads its next-token
 *    bitmask from WebAssembly, masks a logits row and accepts a random allowed token;
 *  - the engine: 32 requests with `response_format` json_schema vs 32 without, the same length
 *    (max_tokens, a schema whose string never has to end), side by side in each round: sampler ms per
 *    step and step ms per step, and their ratios. Medians over rounds.
 * Also: preparing the vocabulary and compiling the schema (first time, then from the cache).
 */
import { parseArgs } from "node:util";
import { LlmEngine } from "../gpu-node/engine/llm-engine.ts";
import { maskDisallowed } from "../gpu-node/engine/logits-constraint.ts";
import { cachedTinyModel } from "../gpu-node/model/tiny-model.ts";
import { GrammarCompiler } from "../gpu-node/grammar/grammar-compiler.ts";
import type { GrammarSpec } from "../gpu-node/grammar/grammar-spec.ts";
import { ModelRunner } from "../gpu-node/runner/model-runner.ts";
import { phi4Tokenizer } from "../gpu-node/tokenizer/phi4-tokenizer.ts";
import { STOP_TOKEN_IDS } from "../gpu-node/tokenizer/special-tokens.ts";
import { parseChatRequest } from "../shared/request-schema.ts";

const { values } = parseArgs({ options: { steps: { type: "string", default: "48" }, rounds: { type: "string", default: "3" } } });
const STEPS = Number(values.steps);
const ROUNDS = Number(values.rounds);
const BATCH = 32;

const schema = {
  type: "object",
  properties: { title: { type: "string" }, tags: { type: "array", items: { type: "string" } }, year: { type: "integer" } },
  required: ["title", "tags", "year"],
  additionalProperties: false,
};
const spec: GrammarSpec = { kind: "json", schema, strict: true };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round3 = (x: number) => Math.round(x * 1000) / 1000;

async function maskOnly(compiler: GrammarCompiler): Promise<number> {
  const tok = phi4Tokenizer();
  const compiled = await compiler.compile(spec);
  const rows = await Promise.all(Array.from({ length: BATCH }, () => compiler.constraint(compiled)));
  const logits = new Float32Array(BATCH * tok.vocabSize);
  let state = 7;
  let ms = 0;
  for (let step = 0; step < STEPS; step++) {
    logits.fill(0);
    const t = performance.now();
    for (let r = 0; r < BATCH; r++) maskDisallowed(logits, r * tok.vocabSize, tok.vocabSize, rows[r].allowedTokens());
    ms += performance.now() - t;
    for (let r = 0; r < BATCH; r++) {
      // A random allowed token (finding it is outside the timing: the draw is the sampler's job).
      const allowed: number[] = [];
      for (let id = 0; id < tok.vocabSize; id++) if (logits[r * tok.vocabSize + id] === 0) allowed.push(id);
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      const t2 = performance.now();
      rows[r].accept(allowed[state % allowed.length]);
      ms += performance.now() - t2;
      if (rows[r].isTerminated) {
        // The document ended: a new one starts in this row.
        rows[r].dispose();
        rows[r] = await compiler.constraint(compiled);
      }
    }
  }
  for (const r of rows) r.dispose();
  return ms / STEPS;
}

async function engineRun(modelDir: string, constrained: boolean): Promise<{ samplerMsPerStep: number; stepMsPerStep: number; steps: number }> {
  const runner = await ModelRunner.load({ modelDir, numBlocks: 1024, blockSize: 16, intraOpThreads: 2 });
  let done = 0;
  const engine = new LlmEngine(runner, phi4Tokenizer(), { maxBatch: BATCH, maxBatchTokens: 4096, intraOpThreads: 2 }, (_id, e) => {
    if (e.type === "done") done++;
  });
  const admitted: Array<Promise<void> | void> = [];
  for (let i = 0; i < BATCH; i++) {
    const parsed = parseChatRequest({
      model: "microsoft/phi-4", messages: [{ role: "user", content: `Describe book number ${i}.` }], max_tokens: STEPS, seed: i,
      ...(constrained ? { response_format: { type: "json_schema", json_schema: { name: "book", schema, strict: true } } } : { logit_bias: { 100265: -100, 100257: -100 } }),
    });
    if (!parsed.ok) throw parsed.error;
    admitted.push(engine.submit({ id: `r${i}`, request: parsed.request }, "bench"));
  }
  await Promise.all(admitted);
  const before = engine.stats();
  while (engine.hasWork) await engine.step();
  const after = engine.stats();
  if (done !== BATCH) throw new Error(`only ${done} of ${BATCH} requests finished`);
  await engine.release();
  await runner.release();
  const steps = after.steps - before.steps;
  return { samplerMsPerStep: (after.samplerMs - before.samplerMs) / steps, stepMsPerStep: (after.stepMs - before.stepMs) / steps, steps };
}

const tok = phi4Tokenizer();
let t = performance.now();
const compiler = await GrammarCompiler.create(tok, [...STOP_TOKEN_IDS]);
const prepareMs = performance.now() - t;
t = performance.now();
await compiler.compile(spec);
const compileMs = performance.now() - t;
t = performance.now();
await compiler.compile(spec);
const cachedMs = performance.now() - t;

const modelDir = await cachedTinyModel(7);
const mask: number[] = [];
const plain: Array<Awaited<ReturnType<typeof engineRun>>> = [];
const json: Array<Awaited<ReturnType<typeof engineRun>>> = [];
for (let r = 0; r < ROUNDS; r++) {
  mask.push(await maskOnly(compiler));
  plain.push(await engineRun(modelDir, false));
  json.push(await engineRun(modelDir, true));
}
const result = {
  batch: BATCH,
  steps: STEPS,
  rounds: ROUNDS,
  prepare_vocabulary_ms: Math.round(prepareMs),
  compile_schema_ms: Math.round(compileMs),
  compile_schema_cached_ms: round3(cachedMs),
  mask_ms_per_step_batch32: round3(median(mask)),
  mask_ms_per_row: round3(median(mask) / BATCH),
  engine_sampler_ms_per_step: { plain: round3(median(plain.map((p) => p.samplerMsPerStep))), json_schema: round3(median(json.map((p) => p.samplerMsPerStep))) },
  engine_step_ms_per_step: { plain: round3(median(plain.map((p) => p.stepMsPerStep))), json_schema: round3(median(json.map((p) => p.stepMsPerStep))) },
  step_ratio_json_over_plain: round3(median(json.map((j, i) => j.stepMsPerStep / plain[i].stepMsPerStep))),
};
console.log(JSON.stringify(result, null, 2));
