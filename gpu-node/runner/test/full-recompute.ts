/**
 * Logits of a whole sequence computed from scratch (past length 0, every token fed at once), the
 * reference that cached decoding must reproduce. Uses `scratchBlocks` only as room for the new K/V rows
 * the graph returns; nothing already in the cache is read.
 */
import type { ModelRunner } from "../model-runner.ts";

export async function fullRecomputeLogits(runner: ModelRunner, tokens: ArrayLike<number>, scratchBlocks: ArrayLike<number>): Promise<Float32Array> {
  return runner.forward([{ tokens, pastLen: 0, blockTable: scratchBlocks }]);
}

/** Index of the largest value (first on ties): greedy sampling for the runner tests. */
export function argmax(values: Float32Array, start = 0, end = values.length): number {
  let best = start;
  for (let i = start + 1; i < end; i++) if (values[i] > values[best]) best = i;
  return best - start;
}
