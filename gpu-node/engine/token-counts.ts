/**
 * What the penalties need to know about one sequence: the prompt's tokens (repetition_penalty) and how
 * often each token has been generated so far (all three). Sparse: the cost of applying penalties is
 * proportional to the distinct tokens seen, never to the vocabulary.
 */
export class TokenCounts {
  /** distinct generated token ids, in first-seen order; `generatedCounts[i]` is how often `generatedIds[i]` occurs. */
  generatedIds = new Int32Array(16);
  generatedCounts = new Int32Array(16);
  distinctGenerated = 0;
  totalGenerated = 0;
  private readonly slot = new Map<number, number>();
  private readonly prompt: ArrayLike<number>;
  /** built on first use: only repetition_penalty needs the prompt's distinct tokens. */
  private promptSet: Set<number> | null;
  /** distinct tokens of prompt ∪ generated, once built. */
  private presentIds: Int32Array | null = null;
  private presentCount = 0;

  constructor(promptTokens: ArrayLike<number>, sharedPromptSet: Set<number> | null = null) {
    this.prompt = promptTokens;
    this.promptSet = sharedPromptSet;
  }

  /** Counts one generated token (also for tokens replayed on resume). */
  add(token: number): void {
    const at = this.slot.get(token);
    this.totalGenerated++;
    if (at !== undefined) {
      this.generatedCounts[at]++;
      return;
    }
    if (this.distinctGenerated === this.generatedIds.length) {
      this.generatedIds = grow(this.generatedIds);
      this.generatedCounts = grow(this.generatedCounts);
    }
    const i = this.distinctGenerated++;
    this.generatedIds[i] = token;
    this.generatedCounts[i] = 1;
    this.slot.set(token, i);
    if (this.presentIds !== null && !this.promptSet!.has(token)) this.pushPresent(token);
  }

  /** A fresh state for another choice of the same prompt (n > 1): shares the prompt's token set, no generated tokens. */
  forSibling(): TokenCounts {
    return new TokenCounts(this.prompt, this.promptSet);
  }

  /** Distinct tokens present in the prompt or the output (for repetition_penalty); the array is longer than `presentLength()`. */
  present(): Int32Array {
    if (this.presentIds === null) this.buildPresent();
    return this.presentIds!;
  }

  presentLength(): number {
    if (this.presentIds === null) this.buildPresent();
    return this.presentCount;
  }

  private buildPresent(): void {
    if (this.promptSet === null) {
      const set = new Set<number>();
      for (let i = 0; i < this.prompt.length; i++) set.add(this.prompt[i]);
      this.promptSet = set;
    }
    this.presentIds = new Int32Array(Math.max(16, this.promptSet.size + this.distinctGenerated));
    for (const token of this.promptSet) this.presentIds[this.presentCount++] = token;
    for (let i = 0; i < this.distinctGenerated; i++) {
      const token = this.generatedIds[i];
      if (!this.promptSet.has(token)) this.pushPresent(token);
    }
  }

  private pushPresent(token: number): void {
    if (this.presentCount === this.presentIds!.length) this.presentIds = grow(this.presentIds!);
    this.presentIds![this.presentCount++] = token;
  }
}

function grow(a: Int32Array): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}
