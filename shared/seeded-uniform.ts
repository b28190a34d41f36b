/**
 * The one seeded uniform source that tests and benchmarks draw fixtures and workloads from (mulberry32:
 * small, fast, the same numbers on every runtime, Node and workerd alike), so a failing case or a
 * benchmark run can be replayed from its seed. Not for serving: the sampler draws from Philox
 * (gpu-node/engine/prng.ts) and the tiny model's weights from their own per-tensor streams.
 */
export function seededUniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
