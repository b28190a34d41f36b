/**
 * Who runs next, and what a step changed: the policy half of the engine (the step loop in llm-engine.ts
 * executes its decisions). All KV block bookkeeping goes through the ledger (block-manager.ts).
 *
 * Each step has a token budget and a cap on running sequences. Running sequences go first, oldest
 * first: a decoding one needs one token, one still prefilling gets the next chunk of its prompt — so
 * streams keep flowing while a long prompt is prefilled piece by piece. Then waiting sequences are
 * admitted in arrival order (FCFS) while budget, batch slots and KV blocks last. When a running
 * sequence needs a block and none is free, the newest running sequence is preempted: its blocks are
 * freed and it waits again, to be recomputed (prompt + what it generated) when room returns.
 */
import { Sequence, SequenceStatus } from "./sequence.ts";

/** What the scheduler needs from the KV block bookkeeping (block-manager.ts provides it). */
export interface KvCacheLedger {
  /** Gives a waiting sequence blocks for all its tokens, reusing cached prefix blocks; false if no room. */
  allocate(seq: Sequence): boolean;
  /** Grows a running sequence's blocks to hold `numTokens` tokens; false if no free block. */
  ensureCapacity(seq: Sequence, numTokens: number): boolean;
  /** After a step computed more of the sequence's tokens: its newly full blocks become findable by later prefixes. */
  commit(seq: Sequence): void;
  free(seq: Sequence): void;
}

export interface SchedulerConfig {
  /** Most sequences in one forward pass. */
  maxBatch: number;
  /** Most tokens (prefill chunks + decodes) in one step. */
  maxBatchTokens: number;
}

/** One row of the next forward pass: feed `numTokens` of `seq` starting at its first uncomputed token. */
export interface ScheduledRow {
  seq: Sequence;
  numTokens: number;
}

export class Scheduler {
  /** Arrival order; preempted sequences go back in by arrival, so they resume before newer ones. */
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  preemptions = 0;

  constructor(
    private readonly config: SchedulerConfig,
    private readonly kv: KvCacheLedger,
    /** A waiting sequence may be held back (an n>1 choice waits until its parent's prompt is cached). */
    private readonly isReady: (seq: Sequence) => boolean = () => true,
  ) {}

  add(seq: Sequence): void {
    seq.status = SequenceStatus.Waiting;
    this.insertWaiting(seq);
  }

  get hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  /** The next step's rows, running sequences first; may preempt to make room. */
  schedule(): ScheduledRow[] {
    const rows: ScheduledRow[] = [];
    let preempted = false;
    const scheduled = new Set<Sequence>();
    let budget = this.config.maxBatchTokens;

    // 1. Running sequences, oldest first.
    const order = [...this.running].sort((a, b) => a.arrival - b.arrival);
    for (const seq of order) {
      if (budget <= 0) break;
      if (seq.status !== SequenceStatus.Running) continue; // preempted earlier in this step
      const want = Math.min(seq.numUncomputedTokens, budget);
      if (want <= 0) continue;
      let fits = this.kv.ensureCapacity(seq, seq.numComputedTokens + want);
      while (!fits) {
        const victim = this.newestUnscheduled(scheduled);
        if (victim === undefined) break;
        this.preempt(victim);
        preempted = true;
        if (victim === seq) break;
        fits = this.kv.ensureCapacity(seq, seq.numComputedTokens + want);
      }
      if (!fits || seq.status !== SequenceStatus.Running) continue;
      rows.push({ seq, numTokens: want });
      scheduled.add(seq);
      budget -= want;
    }

    // 2. Admit waiting sequences in arrival order, unless something was just preempted for room.
    while (!preempted && budget > 0 && this.running.length < this.config.maxBatch && this.waiting.length > 0) {
      const seq = this.waiting[0];
      if (!this.isReady(seq)) break;
      if (!this.kv.allocate(seq)) break;
      this.waiting.shift();
      seq.status = SequenceStatus.Running;
      this.running.push(seq);
      const want = Math.min(seq.numUncomputedTokens, budget);
      rows.push({ seq, numTokens: want });
      scheduled.add(seq);
      budget -= want;
    }
    return rows;
  }

  /**
   * After the step's forward pass: each row's tokens now have their K/V in the cache, and blocks they
   * filled are committed to the prefix cache. A sequence finished meanwhile (aborted while the pass
   * ran) is skipped: its blocks are already free.
   */
  postprocess(rows: readonly ScheduledRow[]): void {
    for (const { seq, numTokens } of rows) {
      if (seq.isFinished) continue;
      seq.numComputedTokens += numTokens;
      this.kv.commit(seq);
    }
  }

  /** Removes a sequence for good (finished or aborted) and frees its blocks. */
  finish(seq: Sequence): void {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    this.kv.free(seq);
    seq.status = SequenceStatus.Finished;
  }

  private preempt(seq: Sequence): void {
    this.running.splice(this.running.indexOf(seq), 1);
    this.kv.free(seq);
    seq.numComputedTokens = 0;
    this.preemptions++;
    this.add(seq);
  }

  private newestUnscheduled(scheduled: Set<Sequence>): Sequence | undefined {
    let newest: Sequence | undefined;
    for (const s of this.running) if (!scheduled.has(s) && (!newest || s.arrival > newest.arrival)) newest = s;
    return newest;
  }

  private insertWaiting(seq: Sequence): void {
    let i = this.waiting.length;
    while (i > 0 && this.waiting[i - 1].arrival > seq.arrival) i--;
    this.waiting.splice(i, 0, seq);
  }
}
