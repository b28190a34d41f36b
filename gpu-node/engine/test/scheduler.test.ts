/**
 * The scheduler's policy on its own: a small ledger that only counts blocks stands in for the block
 * manager (whose prefix cache has tests of its own), so every decision here follows from the budget,
 * the batch cap, the free blocks and arrival order.
 */
import { describe, expect, it } from "vitest";
import { Scheduler, type KvCacheLedger, type ScheduledRow } from "../scheduler.ts";
import { Sequence, SequenceStatus } from "../sequence.ts";

/** Block counting without a prefix cache: enough to exercise admission, growth and preemption. */
class CountingLedger implements KvCacheLedger {
  readonly commits: Array<{ seq: Sequence; computed: number }> = [];
  private next = 0;
  private readonly freeIds: number[] = [];

  constructor(private free_: number, private readonly blockSize: number) {}

  get freeBlocks(): number {
    return this.free_;
  }

  allocate(seq: Sequence): boolean {
    const need = Math.ceil(seq.numTokens / this.blockSize);
    if (need > this.free_) return false;
    for (let i = 0; i < need; i++) seq.blockTable.push(this.take());
    seq.numComputedTokens = 0;
    return true;
  }

  ensureCapacity(seq: Sequence, numTokens: number): boolean {
    const need = Math.ceil(numTokens / this.blockSize) - seq.blockTable.length;
    if (need > this.free_) return false;
    for (let i = 0; i < need; i++) seq.blockTable.push(this.take());
    return true;
  }

  commit(seq: Sequence): void {
    this.commits.push({ seq, computed: seq.numComputedTokens });
  }

  free(seq: Sequence): void {
    this.free_ += seq.blockTable.length;
    this.freeIds.push(...seq.blockTable);
    seq.blockTable.length = 0;
    seq.numComputedTokens = 0;
  }

  private take(): number {
    this.free_--;
    return this.freeIds.pop() ?? this.next++;
  }
}

function prompt(length: number, seed = 0): number[] {
  return Array.from({ length }, (_, i) => (i * 31 + seed) % 1000);
}

/** What a step would do after the forward pass: postprocess, then one new token per row that reached its end. */
function finishStep(s: Scheduler, rows: ScheduledRow[]): void {
  s.postprocess(rows);
  for (const { seq } of rows) if (seq.numComputedTokens === seq.numTokens) seq.tokens.push(7);
}

const shape = (rows: ScheduledRow[]) => rows.map((r) => [r.seq.requestId, r.numTokens]);

describe("Scheduler", () => {
  it("admits waiting sequences first come first served, within the batch cap and the token budget", () => {
    const s = new Scheduler({ maxBatch: 2, maxBatchTokens: 100 }, new CountingLedger(100, 4));
    const [a, b, c] = ["a", "b", "c"].map((id, i) => new Sequence(id, 0, prompt(10, i)));
    s.add(c);
    s.add(a);
    s.add(b); // arrival order is a, b, c whatever the order of `add`
    expect(shape(s.schedule())).toEqual([["a", 10], ["b", 10]]);
    expect(s.running).toEqual([a, b]);
    expect(s.waiting).toEqual([c]);
    expect(a.status).toBe(SequenceStatus.Running);
  });

  it("prefills a long prompt in chunks of the budget while running sequences decode first", () => {
    const s = new Scheduler({ maxBatch: 8, maxBatchTokens: 8 }, new CountingLedger(100, 4));
    const short = new Sequence("short", 0, prompt(3));
    const long = new Sequence("long", 0, prompt(20));
    s.add(short);
    s.add(long);
    let rows = s.schedule();
    expect(shape(rows)).toEqual([["short", 3], ["long", 5]]);
    finishStep(s, rows);
    expect(long.numComputedTokens).toBe(5);
    rows = s.schedule();
    expect(shape(rows)).toEqual([["short", 1], ["long", 7]]);
    finishStep(s, rows);
    rows = s.schedule();
    expect(shape(rows)).toEqual([["short", 1], ["long", 7]]);
    finishStep(s, rows);
    rows = s.schedule();
    expect(shape(rows)).toEqual([["short", 1], ["long", 1]]); // the prompt's last token
  });

  it("postprocess advances computed tokens and commits each live row through the ledger", () => {
    const ledger = new CountingLedger(100, 4);
    const s = new Scheduler({ maxBatch: 8, maxBatchTokens: 6 }, ledger);
    const a = new Sequence("a", 0, prompt(9));
    const b = new Sequence("b", 0, prompt(2));
    s.add(a);
    s.add(b);
    const rows = s.schedule();
    expect(shape(rows)).toEqual([["a", 6]]);
    s.postprocess(rows);
    expect(a.numComputedTokens).toBe(6);
    expect(ledger.commits).toEqual([{ seq: a, computed: 6 }]);

    // A sequence finished while the forward pass ran (an abort): its blocks are free, nothing is committed.
    const next = s.schedule();
    expect(shape(next)).toEqual([["a", 3], ["b", 2]]);
    s.finish(a);
    s.postprocess(next);
    expect(a.numComputedTokens).toBe(0);
    expect(ledger.commits).toEqual([{ seq: a, computed: 6 }, { seq: b, computed: 2 }]);
  });

  it("preempts the newest running sequence when a block runs out, and it resumes before newer arrivals", () => {
    // Block size 4, 4 blocks: two 8-token prompts take 2 blocks each; the first decode needs a third.
    const ledger = new CountingLedger(4, 4);
    const s = new Scheduler({ maxBatch: 8, maxBatchTokens: 64 }, ledger);
    const old = new Sequence("old", 0, prompt(8));
    const young = new Sequence("young", 0, prompt(8, 1));
    s.add(old);
    s.add(young);
    finishStep(s, s.schedule());
    expect(ledger.freeBlocks).toBe(0);
    const later = new Sequence("later", 0, prompt(2, 2));
    s.add(later);

    const rows = s.schedule();
    expect(shape(rows)).toEqual([["old", 1]]);
    expect(s.preemptions).toBe(1);
    expect(young.status).toBe(SequenceStatus.Waiting);
    expect(young.numComputedTokens).toBe(0);
    expect(young.blockTable).toEqual([]);
    // Nothing is admitted in a step that had to preempt, and the preempted one waits ahead of `later`.
    expect(s.waiting).toEqual([young, later]);
    expect(s.running).toEqual([old]);
  });

  it("holds back a sequence that is not ready, and everything behind it", () => {
    const held = new Set<string>(["b"]);
    const s = new Scheduler({ maxBatch: 8, maxBatchTokens: 100 }, new CountingLedger(100, 4), (seq) => !held.has(seq.requestId));
    const [a, b, c] = ["a", "b", "c"].map((id) => new Sequence(id, 0, prompt(4)));
    for (const seq of [a, b, c]) s.add(seq);
    const rows = s.schedule();
    expect(shape(rows)).toEqual([["a", 4]]);
    finishStep(s, rows);
    held.clear();
    expect(shape(s.schedule())).toEqual([["a", 1], ["b", 4], ["c", 4]]);
  });

  it("stops admitting when the ledger has no room, and finish frees for the next", () => {
    const ledger = new CountingLedger(3, 4);
    const s = new Scheduler({ maxBatch: 8, maxBatchTokens: 100 }, ledger);
    const a = new Sequence("a", 0, prompt(8));
    const b = new Sequence("b", 0, prompt(8, 1));
    s.add(a);
    s.add(b);
    expect(shape(s.schedule())).toEqual([["a", 8]]);
    expect(s.waiting).toEqual([b]);
    s.finish(a);
    expect(a.status).toBe(SequenceStatus.Finished);
    expect(ledger.freeBlocks).toBe(3);
    expect(s.hasWork).toBe(true);
    expect(shape(s.schedule())).toEqual([["b", 8]]);
    s.finish(b);
    expect(s.hasWork).toBe(false);
  });
});
