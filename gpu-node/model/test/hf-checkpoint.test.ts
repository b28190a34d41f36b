import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckpointError, hfConfigJson, hfGenerationConfigJson, openHfCheckpoint, phi3ConfigFromHf } from "../hf-checkpoint.ts";
import { PHI4_CONFIG } from "../phi3-config.ts";
import { SafetensorsCheckpoint } from "../safetensors.ts";
import { TEST_PHI3_CONFIG, writeRandomHfCheckpoint } from "./random-hf-checkpoint.ts";

/** microsoft/phi-4's config.json as published (values per docs/phi4-model.md). */
const PHI4_HF_CONFIG = {
  architectures: ["Phi3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 100257,
  embd_pdrop: 0.0,
  eos_token_id: 100265,
  hidden_act: "silu",
  hidden_size: 5120,
  initializer_range: 0.02,
  intermediate_size: 17920,
  max_position_embeddings: 16384,
  model_type: "phi3",
  num_attention_heads: 40,
  num_hidden_layers: 40,
  num_key_value_heads: 10,
  original_max_position_embeddings: 16384,
  pad_token_id: 100349,
  resid_pdrop: 0.0,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 250000,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.47.0",
  use_cache: true,
  vocab_size: 100352,
};

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hf-checkpoint-test-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("phi3ConfigFromHf", () => {
  it("maps Phi-4's config.json to PHI4_CONFIG, stopping on both <|im_end|> and <|endoftext|>", () => {
    const { config, tiedEmbeddings } = phi3ConfigFromHf(PHI4_HF_CONFIG);
    expect(config).toEqual(PHI4_CONFIG);
    expect(tiedEmbeddings).toBe(false);
  });

  it("reads back what hfConfigJson writes: Phi-4's numbers, and the test checkpoint's", () => {
    for (const c of [PHI4_CONFIG, TEST_PHI3_CONFIG]) {
      expect(phi3ConfigFromHf(hfConfigJson(c), hfGenerationConfigJson(c)).config).toEqual(c);
    }
    expect(hfConfigJson(PHI4_CONFIG)).toMatchObject({ ...PHI4_HF_CONFIG, transformers_version: expect.any(String) });
    expect(phi3ConfigFromHf(hfConfigJson(PHI4_CONFIG, { tieWordEmbeddings: true })).tiedEmbeddings).toBe(true);
  });

  it("takes stop ids from config.json and generation_config.json together", () => {
    const hf = { ...PHI4_HF_CONFIG, vocab_size: 1000, eos_token_id: 7, pad_token_id: 3 };
    expect(phi3ConfigFromHf(hf, { eos_token_id: [9, 7] }).config.eosTokenIds).toEqual([7, 9]);
    // Neither file names one: Phi-4's stop ids are the default.
    const silent = { ...hf, vocab_size: 200_000, eos_token_id: undefined };
    expect(phi3ConfigFromHf(silent, {}).config.eosTokenIds).toEqual(PHI4_CONFIG.eosTokenIds);
  });

  it("serves only the sliding window when it is narrower than the context", () => {
    const { config } = phi3ConfigFromHf({ ...PHI4_HF_CONFIG, sliding_window: 2047, max_position_embeddings: 4096 });
    expect(config.contextLength).toBe(2047);
  });

  it.each([
    ["rope_scaling", { rope_scaling: { type: "su", short_factor: [1], long_factor: [1] } }],
    ["rope_scaling", { rope_scaling: { rope_type: "yarn", factor: 4 } }],
    ["hidden_act", { hidden_act: "gelu" }],
    ["attention_bias", { attention_bias: true }],
    ["partial_rotary_factor", { partial_rotary_factor: 0.5 }],
    ["num_key_value_heads", { num_key_value_heads: 7 }],
    ["head_dim", { head_dim: 96 }],
    ["architectures", { architectures: ["Phi3SmallForCausalLM"] }],
    ["hidden_size", { hidden_size: "5120" }],
    ["eos_token_id", { eos_token_id: 200000 }],
  ])("refuses %s it cannot express, naming the field", (field, patch) => {
    expect(() => phi3ConfigFromHf({ ...PHI4_HF_CONFIG, ...patch })).toThrow(CheckpointError);
    expect(() => phi3ConfigFromHf({ ...PHI4_HF_CONFIG, ...patch })).toThrow(new RegExp(`config\\.json: ${field} is`));
  });

  it("accepts an explicit 'default' rope_scaling as plain RoPE", () => {
    expect(phi3ConfigFromHf({ ...PHI4_HF_CONFIG, rope_scaling: { rope_type: "default" } }).config.ropeTheta).toBe(250000);
  });
});

describe("openHfCheckpoint", () => {
  it("opens a sharded checkpoint and serves each tensor as stored, by its HF name", async () => {
    const dir = join(root, "sharded");
    await writeRandomHfCheckpoint(dir, { shards: 2, dtype: "F32", seed: 5 });
    const { config, weights } = await openHfCheckpoint(dir);
    const raw = await SafetensorsCheckpoint.openDir(dir);
    try {
      expect(config).toEqual(TEST_PHI3_CONFIG);
      for (const name of ["model.embed_tokens.weight", "model.layers.1.self_attn.qkv_proj.weight", "lm_head.weight"]) {
        expect(await weights.get(name)).toEqual(await raw.get(name));
      }
      await expect(weights.get("model.layers.9.mlp.down_proj.weight")).rejects.toThrow("tensor model.layers.9.mlp.down_proj.weight is missing");
    } finally {
      await weights.close();
      await raw.close();
    }
  });

  it("handles tied embeddings: lm_head.weight is read from model.embed_tokens.weight", async () => {
    const dir = join(root, "tied");
    await writeRandomHfCheckpoint(dir, { tieWordEmbeddings: true, dtype: "F32" });
    const { weights } = await openHfCheckpoint(dir);
    try {
      const lmHead = await weights.get("lm_head.weight");
      expect(lmHead.shape).toEqual([TEST_PHI3_CONFIG.vocabSize, TEST_PHI3_CONFIG.hiddenSize]);
      expect(lmHead.data).toEqual((await weights.get("model.embed_tokens.weight")).data);
    } finally {
      await weights.close();
    }
  });
});
