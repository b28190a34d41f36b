/**
 * One sequence's grammar state: which tokens may come next (a bitmask over the vocabulary, one bit per
 * token) and the tokens it has accepted. The sampler sees only the mask, applied to the row's logits
 * before anything else, so logit_bias, penalties, top-k/top-p and the seeded draw keep their meaning
 * over the tokens the grammar allows.
 */
import type { GrammarMatcher } from "@mlc-ai/web-xgrammar";

export class TokenConstraint {
  constructor(private readonly matcher: GrammarMatcher) {}

  /** Bit t of word t>>5 set: token t may come next. */
  nextMask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }

  /** Advances the grammar; false if the token was not allowed (the sampler never draws one). */
  accept(token: number): boolean {
    return this.matcher.acceptToken(token);
  }

  /** The grammar has ended (a stop token was accepted at its accept state). */
  get isTerminated(): boolean {
    return this.matcher.isTerminated();
  }

  dispose(): void {
    this.matcher.dispose();
  }
}

/** Sets every token the mask forbids to -Infinity in `logits[offset … offset+vocab)`. Words of all ones are skipped. */
export function applyTokenMask(mask: Int32Array, logits: Float32Array, offset: number, vocab: number): void {
  const words = Math.ceil(vocab / 32);
  for (let w = 0; w < words; w++) {
    const bits = mask[w];
    if (bits === -1) continue;
    const base = offset + w * 32;
    const end = Math.min(32, vocab - w * 32);
    for (let b = 0; b < end; b++) if ((bits & (1 << b)) === 0) logits[base + b] = -Infinity;
  }
}
