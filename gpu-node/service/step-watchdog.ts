/**
 * The step watchdog: a node whose engine holds work but has not finished a step within the bound is
 * stuck (a hung kernel, a dead engine thread), and a stuck node must not look alive. The engine thread
 * answers `stats` only between steps, so an unanswered or unchanged step count while jobs are held is
 * the signal. Once tripped it stays tripped: the node stops renewing its job locks (other nodes take
 * the jobs over when the locks lapse), withdraws from the node registry and answers 503 on `/ready`.
 */
import type { Engine } from "../engine/engine.ts";
import type { Logger } from "./logger.ts";

export class StepWatchdog {
  private timer: NodeJS.Timeout | null = null;
  private lastSteps = -1;
  private lastProgressAt = performance.now();
  private asking = false;
  private tripped: string | null = null;

  constructor(
    private readonly engine: Engine,
    private readonly boundMs: number,
    /** Whether the node holds work the engine should be stepping on. */
    private readonly hasWork: () => boolean,
    private readonly onStall: (reason: string) => void,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.lastProgressAt = performance.now();
    this.timer = setInterval(() => this.check(), Math.max(25, Math.floor(this.boundMs / 4)));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Why the engine counts as stuck, or null. */
  get stallReason(): string | null {
    return this.tripped;
  }

  private check(): void {
    if (this.tripped) return;
    const now = performance.now();
    if (!this.hasWork()) this.lastProgressAt = now;
    if (!this.asking) {
      this.asking = true;
      void this.engine.stats().then((stats) => {
        this.asking = false;
        if (stats.steps !== this.lastSteps || stats.running + stats.waiting === 0) {
          this.lastSteps = stats.steps;
          this.lastProgressAt = performance.now();
        }
      });
    }
    const silentMs = now - this.lastProgressAt;
    if (silentMs > this.boundMs) {
      this.tripped = `engine made no step for ${Math.round(silentMs)} ms while holding work (bound ${this.boundMs} ms)`;
      this.log.error({ silentMs: Math.round(silentMs), boundMs: this.boundMs }, "engine stalled; giving up this node's jobs");
      this.stop();
      this.onStall(this.tripped);
    }
  }
}
