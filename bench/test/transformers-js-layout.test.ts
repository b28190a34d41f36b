/**
 * The transformers.js layout carries the same model as our paged layout: transformers.js 4.x loads it
 * from a local directory (no network) and generates, greedily, exactly the tokens our engine generates
 * from the same seeded weights and the same prompt ids — alone, and in a left-padded static batch.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AutoModelForCausalLM, Tensor, env, type PreTrainedModel } from "@huggingface/transformers";
import { tinyConfig } from "../../gpu-node/model/tiny-model.ts";
import { RandomWeights } from "../../gpu-node/model/random-weights.ts";
import { writeModel } from "../../gpu-node/model/write-model.ts";
import { writeTransformersJsModel } from "../transformers-js-layout.ts";
import { EngineHarness, request } from "../../gpu-node/engine/test/engine-harness.ts";
import { renderChat } from "../../gpu-node/tokenizer/chat-format.ts";
import { phi4Tokenizer } from "../../gpu-node/tokenizer/phi4-tokenizer.ts";

const SEED = 11;
const NEW_TOKENS = 16;
/** Both sides ban the end-of-turn ids so every run yields NEW_TOKENS tokens. */
const EOS = [100_265, 100_257];
const config = tinyConfig();
const prompts = ["Tell me a story about a lighthouse keeper.", "Why is the sky blue?"];

let root: string;
let harness: EngineHarness;
let model: PreTrainedModel;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "phi4-tjs-layout-"));
  await writeModel(config, new RandomWeights(config, SEED), { outDir: path.join(root, "paged"), dtype: "fp32" });
  await writeTransformersJsModel(config, new RandomWeights(config, SEED), path.join(root, "tjs"));
  harness = await EngineHarness.create(path.join(root, "paged"), { kvTokens: 1024 });
  env.allowRemoteModels = false;
  env.localModelPath = root;
  env.useFSCache = false;
  model = await AutoModelForCausalLM.from_pretrained("tjs", {
    dtype: "fp32",
    device: "cpu",
    session_options: { intraOpNumThreads: 2, interOpNumThreads: 1 },
  });
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  await harness?.release();
  if (root) await rm(root, { recursive: true, force: true });
});

function promptIds(text: string): number[] {
  return renderChat(phi4Tokenizer(), request({ messages: [{ role: "user", content: text }] }).messages).ids;
}

function engineGreedy(id: string, text: string): Promise<number[]> {
  harness.submit(id, {
    messages: [{ role: "user", content: text }],
    temperature: 0,
    max_tokens: NEW_TOKENS,
    logit_bias: Object.fromEntries(EOS.map((t) => [String(t), -100])),
  });
  return harness.runUntilIdle().then(() => harness.tokens(id)[0]);
}

/** transformers.js greedy generation over left-padded rows; returns each row's new tokens. */
async function transformersGreedy(rows: number[][]): Promise<number[][]> {
  const width = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(rows.length * width).fill(BigInt(config.padTokenId));
  const mask = new BigInt64Array(rows.length * width);
  rows.forEach((r, b) => r.forEach((t, i) => {
    ids[b * width + width - r.length + i] = BigInt(t);
    mask[b * width + width - r.length + i] = 1n;
  }));
  const out = (await model.generate({
    input_ids: new Tensor("int64", ids, [rows.length, width]),
    attention_mask: new Tensor("int64", mask, [rows.length, width]),
    max_new_tokens: NEW_TOKENS,
    min_new_tokens: NEW_TOKENS,
    do_sample: false,
  })) as Tensor;
  const all = out.tolist() as bigint[][];
  return all.map((row) => row.slice(width).map(Number));
}

describe("transformers.js layout", () => {
  it("writes config.json as a Phi-3 causal LM with HF field names", async () => {
    const cfg = JSON.parse(await readFile(path.join(root, "tjs", "config.json"), "utf8"));
    expect(cfg.model_type).toBe("phi3");
    expect(cfg.architectures).toEqual(["Phi3ForCausalLM"]);
    expect(cfg.num_key_value_heads).toBe(config.numKvHeads);
    expect(cfg.vocab_size).toBe(config.vocabSize);
  });

  it("declares the HF export's inputs and outputs", () => {
    const session = (model as unknown as { sessions: Record<string, { inputNames: string[]; outputNames: string[] }> }).sessions.model;
    expect(session.inputNames).toEqual(expect.arrayContaining(["input_ids", "attention_mask", "position_ids", "past_key_values.0.key", "past_key_values.1.value"]));
    expect(session.outputNames).toEqual(expect.arrayContaining(["logits", "present.0.key", "present.1.value"]));
  });

  it("generates the same greedy tokens as our engine for the same weights and prompt", async () => {
    const ours = await engineGreedy("solo", prompts[0]);
    const theirs = await transformersGreedy([promptIds(prompts[0])]);
    expect(ours).toHaveLength(NEW_TOKENS);
    expect(new Set(ours).size).toBeGreaterThan(1); // not a degenerate constant stream
    expect(theirs[0]).toEqual(ours);
  }, 30_000);

  it("agrees row by row in a left-padded static batch of prompts of different lengths", async () => {
    const [a, b] = prompts.map(promptIds);
    expect(a.length).not.toBe(b.length);
    const oursA = await engineGreedy("batch-a", prompts[0]);
    const oursB = await engineGreedy("batch-b", prompts[1]);
    const theirs = await transformersGreedy([a, b]);
    expect(theirs[0]).toEqual(oursA);
    expect(theirs[1]).toEqual(oursB);
  }, 30_000);

  it("tells models apart: other weights in the transformers.js layout give other tokens", async () => {
    await writeTransformersJsModel(config, new RandomWeights(config, SEED + 1), path.join(root, "tjs-other"));
    const other = await AutoModelForCausalLM.from_pretrained("tjs-other", { dtype: "fp32", device: "cpu" });
    try {
      const ids = promptIds(prompts[0]);
      const out = (await other.generate({
        input_ids: new Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
        attention_mask: new Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
        max_new_tokens: NEW_TOKENS,
        min_new_tokens: NEW_TOKENS,
        do_sample: false,
      })) as Tensor;
      const theirs = (out.tolist() as bigint[][])[0].slice(ids.length).map(Number);
      expect(theirs).not.toEqual(await engineGreedy("other-weights", prompts[0]));
    } finally {
      await other.dispose();
    }
  }, 30_000);
});
