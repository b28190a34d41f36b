/**
 * One choice's grammar state (an XGrammar matcher) as the step sampler's LogitsConstraint: which
 * tokens may come next, as a bitmask, and each token the choice took. The mask is read synchronously
 * from the WebAssembly module into a buffer this object reuses: no allocation per step beyond the
 * module's own vector.
 */
import type { GrammarMatcher } from "@mlc-ai/web-xgrammar";
import type { LogitsConstraint } from "../engine/logits-constraint.ts";
import type { XGrammarBinding } from "./xgrammar-module.ts";

interface MatcherHandle {
  GetNextTokenBitmask(vocabSize: number): { delete(): void };
}

export class TokenConstraint implements LogitsConstraint {
  private readonly mask: Uint32Array;
  private readonly handle: MatcherHandle;

  constructor(private readonly matcher: GrammarMatcher, private readonly binding: XGrammarBinding, private readonly vocabSize: number) {
    this.mask = new Uint32Array(Math.ceil(vocabSize / 32));
    this.handle = (matcher as unknown as { handle: MatcherHandle }).handle;
  }

  allowedTokens(): Uint32Array {
    const vector = this.handle.GetNextTokenBitmask(this.vocabSize);
    try {
      const view = this.binding.vecIntToView(vector);
      this.mask.set(new Uint32Array(view.buffer, view.byteOffset, this.mask.length));
    } finally {
      vector.delete();
    }
    return this.mask;
  }

  /** Advances the grammar. A token the grammar refuses (only possible when replaying another node's output) is an error. */
  accept(token: number): void {
    if (!this.matcher.acceptToken(token)) throw new Error(`token ${token} is not allowed by the grammar here`);
  }

  /** The grammar has ended (a stop token was accepted at its accept state). */
  get isTerminated(): boolean {
    return this.matcher.isTerminated();
  }

  dispose(): void {
    this.matcher.dispose();
  }
}
