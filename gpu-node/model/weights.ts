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

/** One tensor's data, checked against the shape the graph needs (a checkpoint of another shape fails here, by name). */
export async function loadWeight(weights: WeightSource, name: string, shape: number[]): Promise<Float32Array> {
  const t = await weights.get(name);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`tensor ${name}: shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
  }
  if (t.data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`tensor ${name}: data length ${t.data.length} does not match its shape`);
  return t.data;
}
