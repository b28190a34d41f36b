/**
 * The BullMQ consumer: takes chat jobs off the queue while the engine has room, runs each through the
 * engine, and publishes its events to the request's stream.
 *
 * Jobs are fetched by hand (a Worker without a processor, `getNextJob`) because the decision to take a
 * job is the engine's, not a fixed concurrency (admission-gate.ts). Fetching by hand makes three things
 * this node's job that BullMQ's processor loop would otherwise do: renewing the locks of held jobs,
 * running the stalled-job check (so other nodes' dead jobs come back), and settling each job.
 *
 * A job's life here: pickup → parse (a bad job gets an `error` event and fails without retry) → read
 * what its stream already holds (failover.ts) → check the cancel key → engine.submit (resuming if the
 * stream was started elsewhere) → events to the stream, one pipeline per step → completed when `done`
 * is in Redis. A drain hands a running job back to the queue (moveToWait) after its last events are
 * written; whichever node takes it next continues the stream.
 */
import { randomUUID } from "node:crypto";
import { UnrecoverableError, type Job, type Worker } from "bullmq";
import type { RedisConnection } from "./redis-connection.ts";
import { parseChatJob, type ChatJob, type StreamEvent } from "../../shared/protocol.ts";
import { choiceCount } from "../../shared/request-schema.ts";
import type { RedisKeys } from "../../shared/redis-keys.ts";
import type { Engine } from "../engine/engine.ts";
import type { AdmissionGate } from "./admission-gate.ts";
import type { CancelListener } from "./cancel-listener.ts";
import { readPublished, resumeSubmission, type PublishedProgress } from "./failover.ts";
import {
  crashingJobError, expiredJobError, requestStateLostError, jobIdMismatchError, malformedJobError, unknownModelError, withoutPrompt, type ErrorEvent,
} from "./job-rejection.ts";
import type { Logger } from "./logger.ts";
import type { NodeMetrics, RequestOutcome } from "./metrics.ts";
import type { StreamPublisher, StreamTarget } from "./stream-publisher.ts";

export interface JobConsumerDeps {
  engine: Engine;
  /** Created with no processor and `autorun: false`. */
  worker: Worker;
  /** Commands connection (stream reads). */
  redis: RedisConnection;
  publisher: StreamPublisher;
  cancels: CancelListener;
  gate: AdmissionGate;
  metrics: NodeMetrics;
  log: Logger;
  keys: RedisKeys;
  servedModelId: string;
  lockDurationMs: number;
  /** How long a live request's keys last without a write (the publisher's live TTL). */
  liveTtlSeconds: number;
  /** Engine starts a request gets (over all nodes) before it is failed as the likely cause of their crashes. */
  maxJobStarts: number;
  /** A job no node has started within this long is dropped when it is finally taken. */
  jobExpirySeconds: number;
  /** The engine failed: the node cannot serve any more (main exits non-zero after a drain). */
  onEngineFailure: (err: Error) => void;
}

type HeldState = "running" | "handing_back" | "lost";

interface HeldJob {
  id: string;
  job: Job;
  token: string;
  /** Batch slots it takes (its n, once parsed). */
  sequences: number;
  /** performance.now() at pickup. */
  pickedAt: number;
  state: HeldState;
  cancelRequested: boolean;
  /** This pickup counted as one of the request's engine starts. */
  countedStart: boolean;
  submitted: boolean;
  settled: Promise<void>;
}

/**
 * A running request also reads its cancel key every this many deltas: the pub/sub message is the fast
 * path, but one published while the subscriber reconnects is gone, and the key is not.
 */
export const CANCEL_POLL_DELTAS = 16;

/** How long the fetch loop waits for a change before asking the engine again. */
const GATE_RECHECK_MS = 50;

export class JobConsumer {
  private readonly held = new Map<string, HeldJob>();
  private readonly tokenPrefix = randomUUID();
  private tokens = 0;
  private stopping = false;
  private fetchLoop: Promise<void> | null = null;
  private lockTimer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: JobConsumerDeps) {}

  start(): void {
    void this.deps.worker.startStalledCheckTimer();
    this.lockTimer = setInterval(() => void this.renewLocks(), Math.max(100, Math.floor(this.deps.lockDurationMs / 2)));
    this.fetchLoop = this.fetchJobs();
  }

  get jobsHeld(): number {
    return this.held.size;
  }

  get isTakingJobs(): boolean {
    return this.fetchLoop !== null && !this.stopping;
  }

  /** The Worker raised this request's cancel signal. */
  cancel(id: string): void {
    const held = this.held.get(id);
    if (!held || held.cancelRequested) return;
    held.cancelRequested = true;
    if (held.submitted && held.state === "running") this.deps.engine.abort(id);
  }

  /**
   * The engine is stuck (step-watchdog.ts): stop renewing locks and taking jobs, so the held jobs lapse
   * to other nodes, whose owner claim then fences off anything this node still writes.
   */
  abandon(): void {
    this.stopping = true;
    if (this.lockTimer) clearInterval(this.lockTimer);
    this.lockTimer = null;
    this.deps.gate.poke();
  }

  /** The publisher could not write this request's stream: another node owns it now. */
  lose(id: string, reason: string): void {
    const held = this.held.get(id);
    if (!held || held.state !== "running") return;
    held.state = "lost";
    this.deps.log.warn({ jobId: id, reason }, "job lost; stopping its sequences here");
    if (held.submitted) this.deps.engine.abort(id);
  }

  /**
   * Stops taking jobs, lets held ones finish for up to `timeoutMs`, then hands the rest back to the
   * queue with everything they generated so far published.
   */
  async drain(timeoutMs: number): Promise<{ finished: number; handedBack: number }> {
    this.stopping = true;
    this.deps.gate.poke();
    const heldAtStart = this.held.size;
    const all = () => Promise.all([...this.held.values()].map((h) => h.settled));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all(), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    let handedBack = 0;
    for (const held of this.held.values()) {
      if (held.state !== "running") continue;
      held.state = "handing_back";
      handedBack++;
      if (held.submitted) this.deps.engine.abort(held.id);
    }
    await all();
    return { finished: heldAtStart - handedBack, handedBack };
  }

  /** After drain: stops the lock renewal and waits for the fetch loop to notice. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.lockTimer) clearInterval(this.lockTimer);
    this.deps.gate.poke();
  }

  /** Resolves when the fetch loop has exited (it may be blocked in a fetch until the worker closes). */
  fetchLoopDone(): Promise<void> {
    return this.fetchLoop ?? Promise.resolve();
  }

  private get sequencesHeld(): number {
    let total = 0;
    for (const h of this.held.values()) total += h.sequences;
    return total;
  }

  private async fetchJobs(): Promise<void> {
    const { worker, gate, log } = this.deps;
    while (!this.stopping) {
      if (!(await gate.hasRoom(this.sequencesHeld))) {
        await gate.changed(GATE_RECHECK_MS);
        continue;
      }
      if (this.stopping) break;
      const token = `${this.tokenPrefix}:${this.tokens++}`;
      let job: Job | undefined;
      try {
        job = await worker.getNextJob(token, { block: true });
      } catch (err) {
        if (this.stopping) break;
        log.error({ err: (err as Error).message }, "fetching a job failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      if (!job) continue;
      if (this.stopping) {
        // Fetched while the drain began: straight back to the queue.
        await job.moveToWait(token).catch((err: Error) => log.warn({ jobId: job.id, err: err.message }, "handing back a fresh job failed"));
        break;
      }
      this.take(job, token);
    }
  }

  private take(job: Job, token: string): void {
    const id = job.id!;
    const held: HeldJob = {
      id, job, token, sequences: 1, pickedAt: performance.now(), state: "running",
      cancelRequested: false, countedStart: false, submitted: false, settled: Promise.resolve(),
    };
    this.held.set(id, held);
    held.settled = this.run(held)
      .catch((err: Error) => this.deps.log.error({ jobId: id, err: err.message, stack: err.stack }, "job handling failed"))
      .finally(() => {
        this.held.delete(id);
        this.deps.publisher.close(id);
        this.deps.gate.poke();
      });
  }

  private async run(held: HeldJob): Promise<void> {
    const { keys, publisher, metrics, log } = this.deps;
    const { id, job } = held;
    const target = { id, streamKey: keys.stream(id), ownerKey: keys.owner(id), token: held.token };
    // Claim the stream before reading it: a node that lost this job is refused from here on, so what
    // the read sees is all it will ever have written (stream-publisher.ts).
    await this.deps.redis.set(target.ownerKey, held.token, "EX", this.deps.liveTtlSeconds);

    let chat: ChatJob;
    try {
      chat = parseChatJob(job.data);
    } catch (err) {
      return this.reject(held, target, malformedJobError(err), 0);
    }
    if (chat.id !== id) return this.reject(held, target, jobIdMismatchError(id, chat.id), 0);
    const choices = choiceCount(chat.request);
    held.sequences = choices;
    metrics.queueWait.observe(Math.max(0, Date.now() - chat.enqueuedAt) / 1000);

    const [published, cancelRaised] = await Promise.all([readPublished(this.deps.redis, target.streamKey), this.deps.cancels.isRaised(id)]);
    if (published.end !== null) return this.settleEnded(held, published.end);
    const waitedSeconds = (Date.now() - chat.enqueuedAt) / 1000;
    if (published.entries === 0 && waitedSeconds > this.deps.jobExpirySeconds) return this.reject(held, target, expiredJobError(waitedSeconds), 0);
    const modelError = unknownModelError(chat.request.model, this.deps.servedModelId);
    if (modelError) return this.reject(held, target, modelError, published.entries);
    publisher.open(target, published.entries);
    if (cancelRaised || held.cancelRequested) return this.endCancelledUnstarted(held, choices, published);

    // Count the start before the engine sees the job: a job that takes its node down (the engine thread
    // fails, or the process dies) comes back, and after maxJobStarts it is ended instead of run again.
    // A drain's hand-back gives its start back (handBack).
    const [[, starts]] = (await this.deps.redis.multi().incr(keys.starts(id)).expire(keys.starts(id), this.deps.liveTtlSeconds).exec())! as [[Error | null, number]];
    if (starts > this.deps.maxJobStarts) return this.reject(held, target, crashingJobError(starts - 1), published.entries);
    held.countedStart = true;

    const resumed = published.start !== null;
    if (resumed) metrics.resumed.inc();
    log.info({ jobId: id, n: choices, resumedEntries: published.entries, attempt: job.attemptsStarted }, resumed ? "job resumed" : "job started");

    let events: AsyncIterable<StreamEvent>;
    try {
      events = this.deps.engine.submit({ ...resumeSubmission(id, chat.request, published), cacheSalt: chat.cacheSalt });
    } catch (err) {
      return this.engineFailed(held, err as Error);
    }
    held.submitted = true;
    // A cancel or a drain that came while this job was being read: stop it at the engine's next step.
    if (held.cancelRequested || held.state !== "running") this.deps.engine.abort(id);

    const end = await this.relay(held, events, choices, resumed);
    if (end?.type === "error" && end.code === "engine_failed") return this.engineFailed(held, new Error(end.message));

    const written = await publisher.settled(id);
    if (held.state === "handing_back") return this.handBack(held);
    if (held.state === "lost" || written === "lost") {
      if (await this.vanished(target)) return this.endVanished(held, target);
      metrics.requests.inc({ outcome: "lost" });
      return;
    }
    if (end === null) throw new Error(`engine stream of ${id} ended without done or error`);
    const seconds = (performance.now() - held.pickedAt) / 1000;
    metrics.e2eLatency.observe(seconds);
    if (end.type === "done") {
      const outcome: RequestOutcome = end.cancelled ? "cancelled" : "completed";
      await job.moveToCompleted({ outcome, completionTokens: end.usage.completionTokens }, held.token, false);
      metrics.requests.inc({ outcome });
      log.info({ jobId: id, outcome, promptTokens: end.usage.promptTokens, completionTokens: end.usage.completionTokens, ms: Math.round(seconds * 1000) }, "job finished");
    } else {
      await this.failForGood(held, end);
    }
  }

  /**
   * Lost, and nobody else owns it: neither its owner key nor its stream exists. Redis lost its state
   * (restarted without persistence, failed over to an empty replica), and with it the queued job.
   */
  private async vanished(target: StreamTarget): Promise<boolean> {
    try {
      return (await this.deps.redis.exists(target.ownerKey)) === 0 && (await this.deps.redis.exists(target.streamKey)) === 0;
    } catch {
      return false;
    }
  }

  /**
   * Ends a request whose Redis state vanished with an `error` in a fresh stream, so a reader blocked
   * on it (its cursor is older than any new entry id) sees the end instead of waiting for ever.
   */
  private async endVanished(held: HeldJob, target: StreamTarget): Promise<void> {
    const { publisher, metrics, log } = this.deps;
    const claimed = await this.deps.redis.set(target.ownerKey, held.token, "EX", this.deps.liveTtlSeconds, "NX").catch(() => null);
    if (claimed === "OK") {
      publisher.open(target, 0);
      publisher.append(held.id, requestStateLostError());
      await publisher.settled(held.id);
    }
    metrics.requests.inc({ outcome: "lost" });
    log.warn({ jobId: held.id }, "the request's state vanished from Redis; ended its stream with an error");
  }

  /** Engine events → the stream and the metrics. Returns the final event, or null if none came. */
  private async relay(held: HeldJob, events: AsyncIterable<StreamEvent>, n: number, resumed: boolean): Promise<StreamEvent & { type: "done" | "error" } | null> {
    const { publisher, metrics, gate } = this.deps;
    const lastTokenAt = new Float64Array(n);
    let firstToken = true;
    let deltas = 0;
    for await (const event of events) {
      gate.poke(); // an engine step happened: room may have opened
      if (held.state !== "running") {
        if (event.type === "done" || event.type === "error") return event;
        continue;
      }
      switch (event.type) {
        case "start":
          if (resumed) continue; // the stream has its `start` already (failover.ts)
          metrics.promptTokens.inc(event.promptTokens);
          break;
        case "delta": {
          if (++deltas % CANCEL_POLL_DELTAS === 0 && !held.cancelRequested) void this.pollCancel(held.id);
          const count = event.tokens.length;
          if (count > 0) {
            const now = performance.now();
            metrics.generationTokens.inc(count);
            if (firstToken) {
              metrics.timeToFirstToken.observe((now - held.pickedAt) / 1000);
              firstToken = false;
            }
            const last = lastTokenAt[event.index];
            if (last > 0) metrics.interTokenLatency.observe((now - last) / 1000);
            lastTokenAt[event.index] = now;
          }
          break;
        }
        case "error":
          if (event.code === "engine_failed") return event; // not the request's fault: never published
          break;
      }
      publisher.append(held.id, event);
      if (event.type === "done" || event.type === "error") return event;
    }
    return null;
  }

  private async pollCancel(id: string): Promise<void> {
    try {
      if (await this.deps.cancels.isRaised(id)) this.cancel(id);
    } catch {
      // Redis away: the next poll (or the pub/sub message) tells.
    }
  }

  /**
   * The client left before this node started the job: end the stream with `done` + cancelled without
   * spending engine work on it (usage counts what an earlier node published, if anything).
   */
  private async endCancelledUnstarted(held: HeldJob, n: number, published: PublishedProgress): Promise<void> {
    const { publisher, metrics, log } = this.deps;
    let completionTokens = 0;
    for (const tokens of published.tokens) completionTokens += tokens.length;
    const finishReasons = Array.from({ length: n }, (_, i) => published.finishReasons[i] ?? "stop");
    publisher.append(held.id, {
      type: "done", finishReasons, usage: { promptTokens: published.start?.promptTokens ?? 0, completionTokens }, cancelled: true,
    });
    if ((await publisher.settled(held.id)) === "lost") {
      metrics.requests.inc({ outcome: "lost" });
      return;
    }
    await held.job.moveToCompleted({ outcome: "cancelled", completionTokens }, held.token, false);
    metrics.requests.inc({ outcome: "cancelled" });
    log.info({ jobId: held.id, outcome: "cancelled" }, "job cancelled before it started");
  }

  /** A job refused before it reached the engine: one `error` entry, then failed without retry. */
  private async reject(held: HeldJob, target: Parameters<StreamPublisher["open"]>[0], event: ErrorEvent, existingEntries: number): Promise<void> {
    const { publisher, metrics, log } = this.deps;
    publisher.open(target, existingEntries);
    publisher.append(held.id, event);
    if ((await publisher.settled(held.id)) === "lost") {
      metrics.requests.inc({ outcome: "lost" });
      return;
    }
    log.warn({ jobId: held.id, code: event.code, status: event.status, message: event.message }, "job refused");
    await this.failForGood(held, event);
  }

  private async failForGood(held: HeldJob, event: ErrorEvent): Promise<void> {
    // Failed jobs are kept for inspection; the prompt is not (job-rejection.ts).
    await held.job.updateData(withoutPrompt(held.job.data)).catch((err: Error) => this.deps.log.warn({ jobId: held.id, err: err.message }, "removing a failed job's prompt failed"));
    await held.job.moveToFailed(new UnrecoverableError(`${event.code ?? event.errorType}: ${event.message}`), held.token, false);
    this.deps.metrics.requests.inc({ outcome: "rejected" });
  }

  /** The stream already ends (this job's node died after writing its last event): settle the job as it says. */
  private async settleEnded(held: HeldJob, end: NonNullable<PublishedProgress["end"]>): Promise<void> {
    this.deps.log.info({ jobId: held.id, end: end.type }, "job already ended in its stream; settling it");
    if (end.type === "done") {
      const outcome: RequestOutcome = end.cancelled ? "cancelled" : "completed";
      await held.job.moveToCompleted({ outcome, completionTokens: end.usage.completionTokens }, held.token, false);
      this.deps.metrics.requests.inc({ outcome });
    } else {
      await this.failForGood(held, end);
    }
  }

  private async handBack(held: HeldJob, engineFailed = false): Promise<void> {
    // A drain is no fault of the job's: its start does not count against it.
    if (held.countedStart && !engineFailed) await this.deps.redis.decr(this.deps.keys.starts(held.id)).catch(() => undefined);
    await held.job.moveToWait(held.token);
    this.deps.metrics.requests.inc({ outcome: "handed_back" });
    this.deps.log.info({ jobId: held.id }, "job handed back to the queue");
  }

  private async engineFailed(held: HeldJob, err: Error): Promise<void> {
    this.deps.log.fatal({ jobId: held.id, err: err.message }, "engine failed");
    if (held.state === "running") held.state = "handing_back";
    await this.deps.publisher.settled(held.id).catch(() => "lost");
    await this.handBack(held, true).catch(() => undefined);
    this.deps.onEngineFailure(err);
  }

  private async renewLocks(): Promise<void> {
    const ids: string[] = [];
    const tokens: string[] = [];
    for (const h of this.held.values()) {
      if (h.state === "lost") continue;
      ids.push(h.id);
      tokens.push(h.token);
    }
    if (ids.length === 0) return;
    try {
      const failed = await this.deps.worker.extendJobLocks(ids, tokens, this.deps.lockDurationMs);
      for (const id of failed) this.lose(id, "lock renewal refused");
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, "lock renewal failed; retrying next interval");
    }
  }
}
