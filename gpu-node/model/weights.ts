/**
 * Where model weights come from, by their Hugging Face Phi-3 tensor names
 * (`model.embed_tokens.weight`, `model.layers.{i}.self_attn.qkv_proj.weight`,
 * `model.layers.{i}.self_attn.o_proj.weight`, `model.layers.{i}.mlp.gate_up_proj.weight`,
 * `model.layers.{i}.mlp.down_proj.weight`, `model.layers.{i}.input_layernorm.weight`,
 * `model.layers.{i}.post_attention_layernorm.weight`, `model.norm.weight`, `lm_head.weight`).
 * The random tiny model and a safetensors checkpoint both implement it, so one builder serves both.
 */

export interface Tensor32 {
  /** Row-major, HF layout (Linear weights are [out_features, in_features]). */
  data: Float32Array;
  shape: number[];
}

export interface WeightSource {
  /** Loads one tensor as float32; throws naming the tensor if it is missing. Called once per tensor, in model order. */
  get(name: string): Promise<Tensor32>;
  /** Releases file handles. */
  close(): Promise<void>;
}
