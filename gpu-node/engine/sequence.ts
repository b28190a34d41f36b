/**
 * One generated choice: its tokens (prompt, then output), where it stands in the KV cache, and the
 * per-choice state that turns sampled ids into client text (detokenizer, stop matcher, penalty counts).
 * A request with n choices owns n sequences (see request-group.ts).
 */
import type { FinishReason } from "../../shared/openai-types.ts";

export const enum SequenceStatus {
  Waiting = 0,
  Running = 1,
  Finished = 2,
}

let nextArrival = 0;

export class Sequence {
  status = SequenceStatus.Waiting;
  /** Prompt then output ids; grows by one per decode step. */
  tokens: number[];
  readonly promptLength: number;
  /** KV blocks holding this sequence's tokens, in order. */
  blockTable: number[] = [];
  /** Tokens whose K/V are in the cache (computed, or found in the prefix cache). */
  numComputedTokens = 0;
  /** Of those, how many came from the prefix cache at the last allocation. */
  numCachedTokens = 0;
  finishReason: FinishReason | null = null;
  /** The request's prefix-cache salt (block-manager.ts), set at submit. */
  cacheSalt: readonly [number, number] | undefined = undefined;
  /** FCFS order; preemption picks the newest (largest). */
  readonly arrival = nextArrival++;

  constructor(
    readonly requestId: string,
    readonly choiceIndex: number,
    prompt: ReadonlyArray<number>,
    /** Tokens generated before a failover, replayed instead of sampled. */
    resumed: ReadonlyArray<number> = [],
  ) {
    this.tokens = [...prompt, ...resumed];
    this.promptLength = prompt.length;
  }

  get numTokens(): number {
    return this.tokens.length;
  }

  get numOutputTokens(): number {
    return this.tokens.length - this.promptLength;
  }

  /** Tokens still to run through the model before the next sample. */
  get numUncomputedTokens(): number {
    return this.tokens.length - this.numComputedTokens;
  }

  get isFinished(): boolean {
    return this.status === SequenceStatus.Finished;
  }

  get lastToken(): number {
    return this.tokens[this.tokens.length - 1];
  }
}
