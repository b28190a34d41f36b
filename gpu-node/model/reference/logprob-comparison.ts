/**
 * One step of a model checked against the reference: both logits rows turned into log-probabilities,
 * compared on the tokens that matter for generation (the model's greedy token and the reference's top
 * few), not on the whole vocabulary, whose far tail no sampler reaches.
 */

export interface StepComparison {
  /** The model's most likely token (what greedy decoding feeds next). */
  modelGreedy: number;
  referenceGreedy: number;
  /** Reference log-probability of its best token minus its second best: how clear its choice is. */
  referenceMargin: number;
  /** |Δ logprob| of the model's greedy token. */
  greedyError: number;
  /** max |Δ logprob| over the model's greedy token and the reference's top `topN` tokens. */
  maxError: number;
}

/** Natural-log softmax in float64 (stable: the max is subtracted first). */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const logZ = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - logZ;
  return out;
}

/** Ids of the `n` largest values, best first (ties: lower id first). */
export function topIds(values: ArrayLike<number>, n: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    if (best.length === n && values[i] <= values[best[n - 1]]) continue;
    let at = best.length === n ? n - 1 : best.length;
    if (best.length < n) best.push(i);
    while (at > 0 && values[best[at - 1]] < values[i]) {
      best[at] = best[at - 1];
      at--;
    }
    best[at] = i;
  }
  return best;
}

export function compareStep(modelLogits: ArrayLike<number>, referenceLogits: ArrayLike<number>, topN: number): StepComparison {
  if (modelLogits.length !== referenceLogits.length) throw new Error(`logits of ${modelLogits.length} values compared with ${referenceLogits.length}`);
  const model = logSoftmax(modelLogits);
  const reference = logSoftmax(referenceLogits);
  const modelGreedy = topIds(model, 1)[0];
  const referenceTop = topIds(reference, Math.max(2, topN));
  const greedyError = Math.abs(model[modelGreedy] - reference[modelGreedy]);
  let maxError = greedyError;
  for (const id of referenceTop.slice(0, topN)) maxError = Math.max(maxError, Math.abs(model[id] - reference[id]));
  return {
    modelGreedy,
    referenceGreedy: referenceTop[0],
    referenceMargin: referenceTop.length > 1 ? reference[referenceTop[0]] - reference[referenceTop[1]] : Infinity,
    greedyError,
    maxError,
  };
}
