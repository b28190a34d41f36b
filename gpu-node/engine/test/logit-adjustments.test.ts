/**
 * The sparse adjustments a device runner applies equal, entry for entry, the full-row adjustment of
 * logit-adjustments.ts, also when one sequence's arrays are reused from step to step.
 */
import { describe, expect, it } from "vitest";
import { applyBiasAndPenalties, sparseAdjustments } from "../logit-adjustments.ts";
import { DEFAULT_SAMPLING, type SamplingParams } from "../sampling-params.ts";
import { TokenCounts } from "../token-counts.ts";
import type { LogitAdjustments } from "../../runner/step-runner.ts";

const V = 512;

/** A row with the sparse entries applied the way the device ranker does (bias, repetition, addend). */
function applySparse(row: Float32Array, a: LogitAdjustments): void {
  for (let i = 0; i < a.count; i++) {
    const t = a.ids[i];
    let l = row[t] + a.bias[i];
    const p = a.penalty[i];
    if (p !== 1) l = l > 0 ? l / p : l * p;
    row[t] = l + a.addend[i];
  }
}

describe("sparseAdjustments", () => {
  it("matches the full-row adjustment at every step while reusing one sequence's arrays", () => {
    const params: SamplingParams = { ...DEFAULT_SAMPLING, repetitionPenalty: 1.3, frequencyPenalty: 0.4, presencePenalty: 0.2, logitBias: { 5: 3, 17: -2 } };
    const counts = new TokenCounts([1, 2, 3, 5]);
    const slots = new Int32Array(V).fill(-1);
    const base = Float32Array.from({ length: V }, (_, i) => Math.sin(i) * 4);
    let reuse: LogitAdjustments | null = null;
    let reused = 0;
    for (let step = 0; step < 40; step++) {
      const a: LogitAdjustments = sparseAdjustments(params, counts, V, slots, reuse)!;
      if (a === reuse) reused++;
      reuse = a;
      const expected = base.slice();
      applyBiasAndPenalties(expected, 0, V, params, counts);
      const got = base.slice();
      applySparse(got, a);
      for (let i = 0; i < V; i++) expect(got[i]).toBeCloseTo(expected[i], 5);
      expect(slots.every((s) => s === -1)).toBe(true);
      counts.add((step * 37) % 64);
    }
    expect(reused).toBeGreaterThan(30);
  });
});
