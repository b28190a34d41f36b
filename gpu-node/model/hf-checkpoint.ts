/**
 * A Hugging Face Phi-3-family checkpoint directory (Phi-4 is one): `config.json`, optional
 * `generation_config.json`, and `model.safetensors` or shards with `model.safetensors.index.json`.
 *
 * Opening checks everything the builder relies on before any weight is read: the architecture,
 * the numbers it can express (no rope scaling, no biases, SiLU, full-dimension rotary), and that
 * every tensor exists with the shape the config implies. Tensors are read later, one at a time.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { PHI4_CONFIG, type Phi3Config } from "./phi3-config.ts";
import { SafetensorsCheckpoint, SafetensorsError } from "./safetensors.ts";
import type { Tensor32, WeightSource } from "./weights.ts";

/** Input the converter cannot use; the message names the field or tensor at fault. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

export interface HfCheckpoint {
  config: Phi3Config;
  weights: WeightSource;
}

/** Every tensor the model needs, by its Hugging Face name, with the shape `config` implies. */
export function phi3TensorShapes(config: Phi3Config): Map<string, number[]> {
  const { vocabSize: V, hiddenSize: H, numHeads, numKvHeads, headDim, intermediateSize: I } = config;
  const shapes = new Map<string, number[]>();
  shapes.set("model.embed_tokens.weight", [V, H]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}.`;
    shapes.set(p + "input_layernorm.weight", [H]);
    shapes.set(p + "self_attn.qkv_proj.weight", [(numHeads + 2 * numKvHeads) * headDim, H]);
    shapes.set(p + "self_attn.o_proj.weight", [H, numHeads * headDim]);
    shapes.set(p + "post_attention_layernorm.weight", [H]);
    shapes.set(p + "mlp.gate_up_proj.weight", [2 * I, H]);
    shapes.set(p + "mlp.down_proj.weight", [H, I]);
  }
  shapes.set("model.norm.weight", [H]);
  shapes.set("lm_head.weight", [V, H]);
  return shapes;
}

export async function openHfCheckpoint(dir: string): Promise<HfCheckpoint> {
  const hf = await readJson(join(dir, "config.json"), true);
  const generation = await readJson(join(dir, "generation_config.json"), false);
  const { config, tiedEmbeddings } = phi3ConfigFromHf(hf!, generation);

  let checkpoint: SafetensorsCheckpoint;
  try {
    checkpoint = await SafetensorsCheckpoint.openDir(dir);
  } catch (err) {
    if (err instanceof SafetensorsError) throw new CheckpointError(err.message);
    throw err;
  }
  // A tied checkpoint may omit lm_head.weight; the embedding matrix is the output projection then.
  const alias = (name: string) => (tiedEmbeddings && name === "lm_head.weight" ? "model.embed_tokens.weight" : name);
  try {
    for (const [name, shape] of phi3TensorShapes(config)) {
      const found = checkpoint.find(alias(name));
      if (!found) throw new CheckpointError(`tensor ${alias(name)} is missing from the checkpoint in ${dir}`);
      if (found.shape.length !== shape.length || found.shape.some((d, k) => d !== shape[k])) {
        throw new CheckpointError(`tensor ${alias(name)} has shape [${found.shape}], config.json implies [${shape}] (${found.path})`);
      }
    }
  } catch (err) {
    await checkpoint.close();
    throw err;
  }

  const weights: WeightSource = {
    async get(name: string): Promise<Tensor32> {
      try {
        return await checkpoint.get(alias(name));
      } catch (err) {
        if (err instanceof SafetensorsError) throw new CheckpointError(err.message);
        throw err;
      }
    },
    close: () => checkpoint.close(),
  };
  return { config, weights };
}

type Json = Record<string, unknown>;

async function readJson(path: string, required: boolean): Promise<Json | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    if (!required) return null;
    throw new CheckpointError(`${path} is missing (a Hugging Face checkpoint directory has a config.json)`);
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
    return value as Json;
  } catch (err) {
    throw new CheckpointError(`${path} is not a JSON object (${(err as Error).message})`);
  }
}

/**
 * Maps a Hugging Face `Phi3Config` (config.json) to ours, refusing what the graph cannot express.
 * Tied embeddings are handled (lm_head reads the embedding matrix), not refused.
 */
export function phi3ConfigFromHf(hf: Json, generation: Json | null = null): { config: Phi3Config; tiedEmbeddings: boolean } {
  const architectures = hf.architectures;
  if (!Array.isArray(architectures) || !architectures.includes("Phi3ForCausalLM")) {
    throw new CheckpointError(`config.json: architectures is ${JSON.stringify(architectures)}, expected one including "Phi3ForCausalLM"`);
  }
  const int = (field: string, min = 1): number => {
    const v = hf[field];
    if (!Number.isSafeInteger(v) || (v as number) < min) {
      throw new CheckpointError(`config.json: ${field} is ${JSON.stringify(v)}, expected an integer ≥ ${min}`);
    }
    return v as number;
  };
  const positive = (field: string, fallback?: number): number => {
    const v = hf[field] ?? fallback;
    if (typeof v !== "number" || !(v > 0)) throw new CheckpointError(`config.json: ${field} is ${JSON.stringify(v)}, expected a positive number`);
    return v;
  };
  const unsupported = (field: string, why: string) =>
    new CheckpointError(`config.json: ${field} is ${JSON.stringify(hf[field])}: ${why}`);

  const hiddenSize = int("hidden_size");
  const numLayers = int("num_hidden_layers");
  const numHeads = int("num_attention_heads");
  const numKvHeads = hf.num_key_value_heads === undefined || hf.num_key_value_heads === null ? numHeads : int("num_key_value_heads");
  const intermediateSize = int("intermediate_size");
  const vocabSize = int("vocab_size");
  const contextLength = int("max_position_embeddings");
  if (hiddenSize % numHeads !== 0) throw unsupported("hidden_size", `not a multiple of num_attention_heads ${numHeads}`);
  if (numHeads % numKvHeads !== 0) throw unsupported("num_key_value_heads", `does not divide num_attention_heads ${numHeads}`);
  const headDim = hiddenSize / numHeads;
  if (hf.head_dim !== undefined && hf.head_dim !== null && hf.head_dim !== headDim) {
    throw unsupported("head_dim", `differs from hidden_size / num_attention_heads = ${headDim}`);
  }

  // What the graph computes: RMSNorm, SiLU-gated MLP, unscaled full-dimension RoPE, no biases.
  const scaling = hf.rope_scaling as { type?: unknown; rope_type?: unknown } | null | undefined;
  const plainRope = scaling === undefined || scaling === null || (scaling.rope_type ?? scaling.type) === "default";
  if (!plainRope) {
    throw unsupported("rope_scaling", "rope scaling (longrope/su/yarn) is not supported, only plain RoPE");
  }
  if (hf.partial_rotary_factor !== undefined && hf.partial_rotary_factor !== null && hf.partial_rotary_factor !== 1) {
    throw unsupported("partial_rotary_factor", "only full-dimension rotary embeddings are supported");
  }
  if (hf.hidden_act !== undefined && hf.hidden_act !== "silu") throw unsupported("hidden_act", `only "silu" is supported`);
  if (hf.attention_bias === true) throw unsupported("attention_bias", "attention biases are not supported");
  if (hf.sliding_window !== undefined && hf.sliding_window !== null && !Number.isSafeInteger(hf.sliding_window)) {
    throw unsupported("sliding_window", "expected null or an integer");
  }
  const tiedEmbeddings = hf.tie_word_embeddings === true;

  // Stop ids: config.json and generation_config.json both may list them; Phi-4's vocabulary also
  // stops on <|im_end|> and <|endoftext|> (docs/phi4-model.md) even where a file lists only one.
  const eos = new Set<number>([...ids(hf.eos_token_id), ...ids(generation?.eos_token_id)]);
  if (eos.size === 0 || vocabSize === PHI4_CONFIG.vocabSize) for (const id of PHI4_CONFIG.eosTokenIds) eos.add(id);
  for (const id of eos) {
    if (id >= vocabSize) throw unsupported("eos_token_id", `id ${id} is outside the vocabulary of ${vocabSize}`);
  }
  const pad = hf.pad_token_id ?? generation?.pad_token_id;
  const padTokenId = Number.isSafeInteger(pad) ? (pad as number) : vocabSize === PHI4_CONFIG.vocabSize ? PHI4_CONFIG.padTokenId : [...eos][0];

  // With a sliding window narrower than the context, attention beyond it differs; serve only the window.
  const window = hf.sliding_window as number | null | undefined;
  const servedContext = typeof window === "number" && window < contextLength ? window : contextLength;

  return {
    config: {
      vocabSize,
      hiddenSize,
      numLayers,
      numHeads,
      numKvHeads,
      headDim,
      intermediateSize,
      rmsNormEps: positive("rms_norm_eps", 1e-5),
      ropeTheta: positive("rope_theta", 10_000),
      contextLength: servedContext,
      eosTokenIds: [...eos],
      padTokenId,
    },
    tiedEmbeddings,
  };
}

function ids(v: unknown): number[] {
  if (Number.isSafeInteger(v) && (v as number) >= 0) return [v as number];
  if (Array.isArray(v)) return v.filter((x): x is number => Number.isSafeInteger(x) && x >= 0);
  return [];
}

/**
 * The config.json Hugging Face transformers writes for a Phi3ForCausalLM with these numbers: the inverse
 * of phi3ConfigFromHf, for writing checkpoints and other libraries' layouts of our models.
 */
export function hfConfigJson(config: Phi3Config, options: { tieWordEmbeddings?: boolean; torchDtype?: string } = {}): Json {
  return {
    architectures: ["Phi3ForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: config.eosTokenIds[config.eosTokenIds.length - 1],
    embd_pdrop: 0.0,
    eos_token_id: config.eosTokenIds[0],
    hidden_act: "silu",
    hidden_size: config.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: config.intermediateSize,
    max_position_embeddings: config.contextLength,
    model_type: "phi3",
    num_attention_heads: config.numHeads,
    num_hidden_layers: config.numLayers,
    num_key_value_heads: config.numKvHeads,
    original_max_position_embeddings: config.contextLength,
    pad_token_id: config.padTokenId,
    resid_pdrop: 0.0,
    rms_norm_eps: config.rmsNormEps,
    rope_scaling: null,
    rope_theta: config.ropeTheta,
    sliding_window: null,
    tie_word_embeddings: options.tieWordEmbeddings ?? false,
    torch_dtype: options.torchDtype ?? "bfloat16",
    transformers_version: "4.47.0",
    use_cache: true,
    vocab_size: config.vocabSize,
  };
}

/** generation_config.json: every stop id, the pad id, and bos as Phi-4 ships it (its last stop id). */
export function hfGenerationConfigJson(config: Phi3Config): Json {
  return {
    _from_model_config: true,
    bos_token_id: config.eosTokenIds[config.eosTokenIds.length - 1],
    eos_token_id: [...config.eosTokenIds],
    pad_token_id: config.padTokenId,
  };
}
