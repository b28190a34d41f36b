/**
 * A per-choice restriction on the next token, such as a grammar for structured outputs. Modelled on a
 * grammar matcher's token bitmask: before each draw the step sampler asks which tokens may come next
 * and masks the rest out of the row (after bias and penalties, before ranking and the draw, so no bias
 * can bring a masked token back, and logprobs show it as impossible); after the choice takes a token
 * the request group reports it, so the matcher can advance.
 */
export interface LogitsConstraint {
  /**
   * Tokens allowed next: token t is allowed when bit (t & 31) of word (t >>> 5) is set; at least
   * ceil(vocabSize / 32) words. Read before each draw, not kept.
   */
  allowedTokens(): Uint32Array;
  /** The choice took `token` (sampled, or replayed after a failover). */
  accept(token: number): void;
}

/** Sets every logit of row[offset .. offset + vocabSize) whose token the bitmask does not allow to -Infinity. */
export function maskDisallowed(row: Float32Array, offset: number, vocabSize: number, allowed: Uint32Array): void {
  if (allowed.length * 32 < vocabSize) throw new RangeError(`token bitmask of ${allowed.length} words is short of a ${vocabSize}-token vocabulary`);
  for (let w = 0, base = offset; base < offset + vocabSize; w++, base += 32) {
    const word = allowed[w];
    if (word === 0xffffffff) continue;
    const end = Math.min(32, offset + vocabSize - base);
    for (let b = 0; b < end; b++) if ((word & (1 << b)) === 0) row[base + b] = -Infinity;
  }
}
