/**
 * The reference a converted ONNX model is verified against: a plain float64 Phi-3 forward pass written
 * straight from the Hugging Face modeling code's math, reading the checkpoint's safetensors itself and
 * sharing nothing with the graph builder or the runners (only the config type and the safetensors
 * reader), so a mistake in either cannot hide in both. `npm run model:verify` runs it against a
 * converted model; the tests and bench/phi4-layer.ts measure logit errors with it.
 * Slow by design (one token at a time, scalar loops, every weight held in memory): a verification
 * tool, never a serving path.
 *
 *   x = embed[token]
 *   per layer: x += o_proj(attention(rope(q), rope(k), v))  on rmsnorm(x) · input_layernorm
 *              x += down_proj(silu(gate) · up)               on rmsnorm(x) · post_attention_layernorm
 *   logits = lm_head(rmsnorm(x) · norm)
 *
 * qkv_proj rows are q (numHeads·headDim), then k, then v (numKvHeads·headDim each); gate_up_proj
 * rows are gate, then up. RoPE is HF's rotate_half form over the full head dimension with
 * inv_freq[i] = theta^(-2i/headDim); query head h reads key/value head floor(h / (numHeads/numKvHeads)).
 */
import type { Phi3Config } from "../phi3-config.ts";
import { SafetensorsCheckpoint } from "../safetensors.ts";
import type { Tensor32, WeightSource } from "../weights.ts";

/** The values a weight takes in some storage format, by tensor name (HF layout, same length). */
export type WeightRounding = (name: string, tensor: Tensor32) => Float32Array;

/**
 * Weights are kept as the float32 values the file holds (every format here is float32 or narrower) and
 * widened exactly on every read, so the arithmetic is float64 throughout at half the memory: a
 * Phi-4-layer-shaped model (bench/phi4-layer.ts) fits in 7 GB instead of 14.
 */
interface LayerWeights {
  inputNorm: Float32Array;
  qkv: Float32Array;
  o: Float32Array;
  postNorm: Float32Array;
  gateUp: Float32Array;
  down: Float32Array;
}

/** One sequence's keys and values so far, per layer: position-major [pos][kvHead][dim]. */
export class ReferenceKvCache {
  length = 0;
  readonly keys: Float64Array[][] = [];
  readonly values: Float64Array[][] = [];

  constructor(numLayers: number) {
    for (let l = 0; l < numLayers; l++) {
      this.keys.push([]);
      this.values.push([]);
    }
  }
}

export class ReferencePhi3 {
  private constructor(
    readonly config: Phi3Config,
    private readonly embed: Float32Array,
    private readonly layers: LayerWeights[],
    private readonly finalNorm: Float32Array,
    private readonly lmHead: Float32Array,
  ) {}

  /**
   * Loads every weight (the values the file holds; widened exactly to float64 when read). `roundWeight`, if
   * given, replaces a tensor's values first, modelling a storage format's rounding (fp16, int8, int4) to
   * check the graph computes exactly with the rounded weights.
   */
  static async load(config: Phi3Config, weights: WeightSource, roundWeight?: WeightRounding): Promise<ReferencePhi3> {
    const get = async (name: string, size: number) => {
      const t = await weights.get(name);
      if (t.data.length !== size) throw new Error(`reference: ${name} has ${t.data.length} values, expected ${size}`);
      return roundWeight ? roundWeight(name, t) : t.data;
    };
    const { vocabSize: V, hiddenSize: H, numHeads, numKvHeads, headDim, intermediateSize: I } = config;
    const embed = await get("model.embed_tokens.weight", V * H);
    const layers: LayerWeights[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}.`;
      layers.push({
        inputNorm: await get(p + "input_layernorm.weight", H),
        qkv: await get(p + "self_attn.qkv_proj.weight", (numHeads + 2 * numKvHeads) * headDim * H),
        o: await get(p + "self_attn.o_proj.weight", H * numHeads * headDim),
        postNorm: await get(p + "post_attention_layernorm.weight", H),
        gateUp: await get(p + "mlp.gate_up_proj.weight", 2 * I * H),
        down: await get(p + "mlp.down_proj.weight", H * I),
      });
    }
    const finalNorm = await get("model.norm.weight", H);
    const lmHead = await get("lm_head.weight", V * H);
    return new ReferencePhi3(config, embed, layers, finalNorm, lmHead);
  }

  /** Reads the weights straight from a checkpoint directory's safetensors (single or sharded). */
  static async fromSafetensorsDir(dir: string, config: Phi3Config, roundWeight?: WeightRounding): Promise<ReferencePhi3> {
    const checkpoint = await SafetensorsCheckpoint.openDir(dir);
    try {
      return await ReferencePhi3.load(config, checkpoint, roundWeight);
    } finally {
      await checkpoint.close();
    }
  }

  newCache(): ReferenceKvCache {
    return new ReferenceKvCache(this.config.numLayers);
  }

  /** Appends `tokens` to the cached sequence and returns the logits after its last token. */
  forward(cache: ReferenceKvCache, tokens: ArrayLike<number>): Float64Array {
    if (tokens.length === 0) throw new Error("reference: forward needs at least one token");
    let hidden: Float64Array = new Float64Array(0);
    for (let t = 0; t < tokens.length; t++) hidden = this.step(cache, tokens[t]);
    return this.logits(hidden);
  }

  /** Logits after the last of `tokens`, computed from nothing (no cache reused). */
  recompute(tokens: ArrayLike<number>): Float64Array {
    return this.forward(this.newCache(), tokens);
  }

  /** One token through every layer at position cache.length; returns the final hidden state (pre-norm). */
  private step(cache: ReferenceKvCache, token: number): Float64Array {
    const { hiddenSize: H, numHeads, numKvHeads, headDim, intermediateSize: I, vocabSize } = this.config;
    if (!Number.isInteger(token) || token < 0 || token >= vocabSize) throw new Error(`reference: token ${token} outside the vocabulary`);
    const position = cache.length;
    const x = Float64Array.from(this.embed.subarray(token * H, (token + 1) * H));
    const qSize = numHeads * headDim;
    const kvSize = numKvHeads * headDim;
    const groupSize = numHeads / numKvHeads;
    const scale = 1 / Math.sqrt(headDim);

    for (let l = 0; l < this.layers.length; l++) {
      const w = this.layers[l];
      const qkv = matVec(w.qkv, rmsNorm(x, w.inputNorm, this.config.rmsNormEps), qSize + 2 * kvSize, H);
      const q = qkv.subarray(0, qSize);
      const k = qkv.slice(qSize, qSize + kvSize);
      const v = qkv.slice(qSize + kvSize);
      for (let h = 0; h < numHeads; h++) applyRope(q, h * headDim, headDim, position, this.config.ropeTheta);
      for (let h = 0; h < numKvHeads; h++) applyRope(k, h * headDim, headDim, position, this.config.ropeTheta);
      cache.keys[l].push(k);
      cache.values[l].push(v);

      const attended = new Float64Array(qSize);
      const scores = new Float64Array(position + 1);
      for (let h = 0; h < numHeads; h++) {
        const kvBase = Math.floor(h / groupSize) * headDim;
        const qBase = h * headDim;
        let max = -Infinity;
        for (let j = 0; j <= position; j++) {
          const kj = cache.keys[l][j];
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += q[qBase + d] * kj[kvBase + d];
          scores[j] = dot * scale;
          if (scores[j] > max) max = scores[j];
        }
        let sum = 0;
        for (let j = 0; j <= position; j++) {
          scores[j] = Math.exp(scores[j] - max);
          sum += scores[j];
        }
        for (let j = 0; j <= position; j++) {
          const p = scores[j] / sum;
          const vj = cache.values[l][j];
          for (let d = 0; d < headDim; d++) attended[qBase + d] += p * vj[kvBase + d];
        }
      }
      addInto(x, matVec(w.o, attended, H, qSize));

      const gateUp = matVec(w.gateUp, rmsNorm(x, w.postNorm, this.config.rmsNormEps), 2 * I, H);
      const act = new Float64Array(I);
      for (let i = 0; i < I; i++) {
        const g = gateUp[i];
        act[i] = (g / (1 + Math.exp(-g))) * gateUp[I + i];
      }
      addInto(x, matVec(w.down, act, H, I));
    }
    cache.length++;
    return x;
  }

  private logits(hidden: Float64Array): Float64Array {
    const { hiddenSize: H, vocabSize } = this.config;
    return matVec(this.lmHead, rmsNorm(hidden, this.finalNorm, this.config.rmsNormEps), vocabSize, H);
  }
}

/** How far a logits vector is from the reference's: max |actual − expected| / max |expected|. */
export function relativeLogitError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`logits of ${actual.length} values compared with ${expected.length}`);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxDiff / maxRef;
}

function rmsNorm(x: Float64Array, weight: Float32Array, eps: number): Float64Array {
  let sumSquares = 0;
  for (let i = 0; i < x.length; i++) sumSquares += x[i] * x[i];
  const inv = 1 / Math.sqrt(sumSquares / x.length + eps);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * inv * weight[i];
  return out;
}

/** y = W x for W stored [rows, cols] row-major (a Hugging Face Linear weight, [out, in]). */
function matVec(w: Float32Array, x: Float64Array, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const base = r * cols;
    for (let c = 0; c < cols; c++) s += w[base + c] * x[c];
    y[r] = s;
  }
  return y;
}

function addInto(x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}

/** HF rotate_half RoPE on one head in place: pairs (i, i + d/2) rotate by position · theta^(-2i/d). */
function applyRope(v: Float64Array, base: number, headDim: number, position: number, theta: number): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const angle = position * Math.pow(theta, (-2 * i) / headDim);
    const cos = Math.cos(angle);
    const sin = Math.sin(angle);
    const a = v[base + i];
    const b = v[base + half + i];
    v[base + i] = a * cos - b * sin;
    v[base + half + i] = b * cos + a * sin;
  }
}
