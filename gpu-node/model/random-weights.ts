/**
 * A seeded random Phi-3 checkpoint: HF-named tensors generated on demand, bit-identical for the same seed.
 * Each tensor has its own PRNG stream (sfc32 seeded from the model seed and the tensor name), so the
 * values do not depend on the order tensors are asked for. Scales follow an initialised model:
 * Linear and embedding weights ~ N(0, 0.02²), norm weights ~ 1 + N(0, 0.02²).
 */
import type { Phi3Config } from "./phi3-config.ts";
import type { Tensor32, WeightSource } from "./weights.ts";

export const INIT_STD = 0.02;

/** Expected HF tensor shapes of a Phi-3 checkpoint, in model order. */
export function phi3TensorShapes(c: Phi3Config): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  shapes.set("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    shapes.set(`${p}.input_layernorm.weight`, [c.hiddenSize]);
    shapes.set(`${p}.self_attn.qkv_proj.weight`, [(c.numHeads + 2 * c.numKvHeads) * c.headDim, c.hiddenSize]);
    shapes.set(`${p}.self_attn.o_proj.weight`, [c.hiddenSize, c.numHeads * c.headDim]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [c.hiddenSize]);
    shapes.set(`${p}.mlp.gate_up_proj.weight`, [2 * c.intermediateSize, c.hiddenSize]);
    shapes.set(`${p}.mlp.down_proj.weight`, [c.hiddenSize, c.intermediateSize]);
  }
  shapes.set("model.norm.weight", [c.hiddenSize]);
  shapes.set("lm_head.weight", [c.vocabSize, c.hiddenSize]);
  return shapes;
}

export class RandomWeights implements WeightSource {
  private readonly shapes: Map<string, number[]>;

  constructor(
    config: Phi3Config,
    private readonly seed: number,
  ) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`seed must be an integer in [0, 2^32), got ${seed}`);
    this.shapes = phi3TensorShapes(config);
  }

  async get(name: string): Promise<Tensor32> {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`random weights: no tensor named ${name}`);
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const rng = new NormalStream(this.seed, name);
    const isNorm = shape.length === 1;
    for (let i = 0; i < data.length; i++) data[i] = (isNorm ? 1 : 0) + INIT_STD * rng.next();
    return { data, shape: [...shape] };
  }

  async close(): Promise<void> {}
}

/** Standard normal values from sfc32 + Box-Muller. */
class NormalStream {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare = 0;
  private hasSpare = false;

  constructor(seed: number, name: string) {
    const h = fnv1a(name);
    this.a = seed >>> 0;
    this.b = h;
    this.c = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
    this.d = 1;
    for (let i = 0; i < 16; i++) this.u32(); // mix the seed in
  }

  private u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  next(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    const u1 = (this.u32() + 1) / 4294967297; // (0, 1)
    const u2 = this.u32() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    this.hasSpare = true;
    return r * Math.cos(2 * Math.PI * u2);
  }
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
