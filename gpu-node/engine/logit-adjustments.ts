/**
 * What a request's settings do to a row of logits before anything is ranked or drawn, in vLLM's order:
 * logit_bias, then repetition_penalty (prompt and output tokens), then frequency/presence penalties
 * (output tokens). Sparse: the cost follows the bias entries and the distinct tokens seen, never the
 * vocabulary. A request's logit_bias object is compiled once (treat it as immutable).
 */
import type { LogitAdjustments } from "../runner/step-runner.ts";
import type { SamplingParams } from "./sampling-params.ts";
import type { TokenCounts } from "./token-counts.ts";

interface CompiledBias { ids: Int32Array; values: Float32Array }
const compiledBiases = new WeakMap<Record<number, number>, CompiledBias>();

function compileBias(bias: Record<number, number>, vocabSize: number): CompiledBias {
  let c = compiledBiases.get(bias);
  if (c === undefined) {
    const entries = Object.entries(bias).filter(([k, v]) => Number(k) >= 0 && Number(k) < vocabSize && v !== 0);
    c = { ids: Int32Array.from(entries, ([k]) => Number(k)), values: Float32Array.from(entries, ([, v]) => v) };
    compiledBiases.set(bias, c);
  }
  return c;
}

/** Adds the bias and applies the penalties to row[offset .. offset + vocabSize), in place. */
export function applyBiasAndPenalties(row: Float32Array, offset: number, vocabSize: number, p: SamplingParams, counts: TokenCounts): void {
  const bias = compileBias(p.logitBias, vocabSize);
  for (let i = 0; i < bias.ids.length; i++) row[offset + bias.ids[i]] += bias.values[i];

  const rep = p.repetitionPenalty;
  if (rep !== 1) {
    const present = counts.present();
    const n = counts.presentLength();
    for (let i = 0; i < n; i++) {
      const at = offset + present[i];
      const x = row[at];
      row[at] = x > 0 ? x / rep : x * rep;
    }
  }
  const freq = p.frequencyPenalty;
  const pres = p.presencePenalty;
  if (freq !== 0 || pres !== 0) {
    const ids = counts.generatedIds;
    const cs = counts.generatedCounts;
    for (let i = 0; i < counts.distinctGenerated; i++) row[offset + ids[i]] -= cs[i] * freq + pres;
  }
}

/**
 * The same adjustments as sparse entries for a runner to apply on its device (LogitAdjustments: each id
 * once, bias then repetition then frequency/presence, as above); null when the settings change nothing.
 * `slotOf` is vocabulary-sized scratch holding -1 everywhere; it is left that way.
 */
export function sparseAdjustments(
  p: SamplingParams, counts: TokenCounts, vocabSize: number, slotOf: Int32Array, reuse: LogitAdjustments | null = null,
): LogitAdjustments | null {
  const bias = compileBias(p.logitBias, vocabSize);
  const rep = p.repetitionPenalty;
  const freq = p.frequencyPenalty;
  const pres = p.presencePenalty;
  const nRep = rep !== 1 ? counts.presentLength() : 0;
  const nGen = freq !== 0 || pres !== 0 ? counts.distinctGenerated : 0;
  const capacity = bias.ids.length + nRep + nGen;
  if (capacity === 0) return null;
  // A sequence's entries grow by at most one token a step: reuse last step's arrays while they are large
  // enough (grown with headroom), so a decode step allocates nothing here.
  const a: LogitAdjustments = reuse !== null && reuse.ids.length >= capacity ? reuse : {
    count: 0, ids: new Int32Array(capacity * 2), bias: new Float32Array(capacity * 2),
    penalty: new Float32Array(capacity * 2), addend: new Float32Array(capacity * 2),
  };
  a.count = 0;
  a.bias.fill(0, 0, capacity);
  a.addend.fill(0, 0, capacity);
  const slot = (id: number): number => {
    let at = slotOf[id];
    if (at < 0) {
      at = a.count++;
      slotOf[id] = at;
      a.ids[at] = id;
      a.penalty[at] = 1;
    }
    return at;
  };
  for (let i = 0; i < bias.ids.length; i++) a.bias[slot(bias.ids[i])] += bias.values[i];
  const present = nRep > 0 ? counts.present() : null;
  for (let i = 0; i < nRep; i++) a.penalty[slot(present![i])] = rep;
  for (let i = 0; i < nGen; i++) a.addend[slot(counts.generatedIds[i])] = -(counts.generatedCounts[i] * freq + pres);
  for (let i = 0; i < a.count; i++) slotOf[a.ids[i]] = -1;
  return a;
}
