/**
 * When this node may take another job off the queue. A busy node must not hoard jobs that an idle
 * node could start now, so a job is fetched only when the engine has room for it:
 * - a batch slot: the sequences of the jobs it holds (n each) are fewer than MAX_BATCH;
 * - nothing stuck inside the engine: no sequence waits for admission (a waiting one means the engine
 *   is out of KV blocks or busy prefilling what it already has);
 * - KV headroom: free blocks cover one more block for every running sequence (their growth over the
 *   next block of steps) plus at least one block for a new prompt.
 * An idle node answers at once without asking the engine (the pickup-latency path); a busy one asks
 * for a stats snapshot, which the engine thread answers between steps.
 */
import type { EngineStats } from "../engine/llm-engine.ts";

export interface EngineLoad {
  stats(): Promise<EngineStats>;
}

export class AdmissionGate {
  private wakers: Array<() => void> = [];

  constructor(
    private readonly engine: EngineLoad,
    private readonly maxBatch: number,
  ) {}

  /** Decides from the node's own count and, when busy, a fresh engine snapshot. */
  async hasRoom(sequencesHeld: number): Promise<boolean> {
    if (sequencesHeld === 0) return true;
    if (sequencesHeld >= this.maxBatch) return false;
    return roomIn(await this.engine.stats());
  }

  /** Resolves when something changed that may open the gate (an engine step, a job ending), or after `ms`. */
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      timer = setTimeout(wake, ms);
      this.wakers.push(wake);
    });
  }

  /** Something changed: wake whoever waits in `changed`. */
  poke(): void {
    if (this.wakers.length === 0) return;
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }
}

export function roomIn(stats: EngineStats): boolean {
  return stats.waiting === 0 && stats.kvBlocksFree >= stats.running + 1;
}
