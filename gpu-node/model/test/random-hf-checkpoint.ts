/**
 * Writes a random tiny Hugging Face Phi-3 checkpoint directory for tests: a `config.json` with the
 * real Phi-3 keys, a `generation_config.json`, and safetensors with the real tensor names
 * (fused `qkv_proj` and `gate_up_proj`, untied `lm_head`), in bf16 (as Phi-4 ships) or f16/f32,
 * one file or sharded with an index. Same seed, same bytes.
 *
 * Knobs to break it on purpose (for the converter's error tests): drop a tensor, give one a wrong
 * shape, override config.json fields.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { hfConfigJson, hfGenerationConfigJson, phi3TensorShapes } from "../hf-checkpoint.ts";
import type { Phi3Config } from "../phi3-config.ts";
import { tinyConfig } from "../tiny-model.ts";
import { seededUniform } from "../../../shared/seeded-uniform.ts";
import { SINGLE_FILE, writeSafetensors, writeSafetensorsSharded, type SafetensorsDtype, type TensorToWrite } from "../safetensors.ts";

/** Small enough to convert and run in milliseconds; head dim 16 satisfies GroupQueryAttention's % 16. */
export const TEST_PHI3_CONFIG: Phi3Config = tinyConfig({
  vocabSize: 512,
  ropeTheta: 10_000,
  contextLength: 256,
  eosTokenIds: [500, 501],
  padTokenId: 502,
});

export interface RandomHfCheckpointOptions {
  config?: Phi3Config;
  seed?: number;
  /** Stored dtype of every tensor (default BF16, as Phi-4 is released). */
  dtype?: SafetensorsDtype;
  /** 1 (default) writes `model.safetensors`; more writes shards plus `model.safetensors.index.json`. */
  shards?: number;
  tieWordEmbeddings?: boolean;
  /** Tensors left out of the files (a broken checkpoint). */
  omitTensors?: string[];
  /** Tensors written with another shape than the config implies (a broken checkpoint). */
  reshapeTensors?: Record<string, number[]>;
  /** Fields merged over the generated config.json (undefined deletes a field). */
  configOverrides?: Record<string, unknown>;
}

export async function writeRandomHfCheckpoint(dir: string, options: RandomHfCheckpointOptions = {}): Promise<Phi3Config> {
  const config = options.config ?? TEST_PHI3_CONFIG;
  const random = seededUniform(options.seed ?? 1);
  const omit = new Set(options.omitTensors ?? []);
  const tensors: TensorToWrite[] = [];
  for (const [name, impliedShape] of phi3TensorShapes(config)) {
    if (options.tieWordEmbeddings && name === "lm_head.weight") continue;
    const shape = options.reshapeTensors?.[name] ?? impliedShape;
    const data = randomTensor(name, shape, random);
    if (!omit.has(name)) tensors.push({ name, shape, data });
  }

  await mkdir(dir, { recursive: true });
  const json = hfConfigJson(config, { tieWordEmbeddings: options.tieWordEmbeddings });
  for (const [key, value] of Object.entries(options.configOverrides ?? {})) {
    if (value === undefined) delete json[key];
    else json[key] = value;
  }
  await writeFile(join(dir, "config.json"), JSON.stringify(json, null, 2) + "\n");
  const generation = { ...hfGenerationConfigJson(config), bos_token_id: json.bos_token_id };
  await writeFile(join(dir, "generation_config.json"), JSON.stringify(generation, null, 2) + "\n");

  const dtype = options.dtype ?? "BF16";
  const shards = options.shards ?? 1;
  if (shards > 1) await writeSafetensorsSharded(dir, tensors, dtype, shards);
  else await writeSafetensors(join(dir, SINGLE_FILE), tensors, dtype);
  return config;
}

/**
 * Values of a trained model's scale so activations stay O(1) through the layers: norm gains near 1,
 * projections with variance 1/fan_in, embeddings of unit scale. Logits get a spread of a few units
 * so greedy choices are not near-ties.
 */
function randomTensor(name: string, shape: number[], random: () => number): Float32Array {
  const count = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count);
  if (name.endsWith("layernorm.weight") || name === "model.norm.weight") {
    for (let i = 0; i < count; i++) data[i] = 1 + 0.4 * (random() - 0.5);
    return data;
  }
  const fanIn = shape[shape.length - 1];
  const std = name === "model.embed_tokens.weight" ? 1 : name === "lm_head.weight" ? 3 / Math.sqrt(fanIn) : 1 / Math.sqrt(fanIn);
  const halfWidth = std * Math.sqrt(3); // uniform(-a, a) has std a/√3
  for (let i = 0; i < count; i++) data[i] = (2 * random() - 1) * halfWidth;
  return data;
}
