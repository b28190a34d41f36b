/**
 * Random Phi-3 weights at memory speed, for timing a full-size shape: one pool of N(0, 0.02²) values is
 * drawn once, and each tensor is the pool copied from a starting offset derived from the tensor's name.
 * A step's speed does not depend on the weights' values (no kernel branches on them), so a pool is as
 * good as fresh draws for timing, while drawing ≈ 2 billion fresh normals for a few Phi-4-sized layers
 * would cost minutes of a GPU machine's lease. For exact, seeded models use RandomWeights.
 */
import { INIT_STD, phi3TensorShapes } from "../../gpu-node/model/random-weights.ts";
import type { Phi3Config } from "../../gpu-node/model/phi3-config.ts";
import type { Tensor32, WeightSource } from "../../gpu-node/model/weights.ts";

/** A prime, so tensors whose sizes are multiples of powers of two do not repeat in lockstep. */
const POOL_SIZE = 1_048_573;

export class PooledRandomWeights implements WeightSource {
  private readonly shapes: Map<string, number[]>;
  private readonly pool = new Float32Array(POOL_SIZE);

  constructor(config: Phi3Config, seed: number) {
    this.shapes = phi3TensorShapes(config);
    // xorshift32 + Box-Muller: the pool only has to look like initialised weights.
    let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
    const u32 = (): number => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return s >>> 0;
    };
    for (let i = 0; i < POOL_SIZE; i++) {
      const u1 = (u32() + 1) / 4294967297;
      const u2 = u32() / 4294967296;
      this.pool[i] = INIT_STD * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }
  }

  async get(name: string): Promise<Tensor32> {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`pooled random weights: no tensor named ${name}`);
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    let src = fnv1a(name) % POOL_SIZE;
    for (let dst = 0; dst < data.length; ) {
      const n = Math.min(POOL_SIZE - src, data.length - dst);
      data.set(this.pool.subarray(src, src + n), dst);
      dst += n;
      src = 0;
    }
    if (shape.length === 1) for (let i = 0; i < data.length; i++) data[i] += 1; // RMSNorm weights sit around 1
    return { data, shape: [...shape] };
  }

  async close(): Promise<void> {}
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
