/**
 * The step loop: schedule → run (one forward pass over the batch) → postprocess (the scheduler
 * records what was computed) → sample (each row that reached the end of its known tokens) → publish
 * (deltas; finished sequences retire). Everything that touches the model goes through the runner
 * (StepRunner), every policy decision comes from the Scheduler, every draw from the StepSampler.
 * Runs inside the engine's worker thread (engine-thread.ts): a forward pass blocks its thread.
 */
import os from "node:os";
import { ApiError } from "../../shared/errors.ts";
import type { FinishReason } from "../../shared/openai-types.ts";
import type { StreamEvent } from "../../shared/protocol.ts";
import type { ChatRequest } from "../../shared/request-schema.ts";
import type { RunnerOutput, StepRunner } from "../runner/step-runner.ts";
import { renderChat } from "../tokenizer/chat-format.ts";
import type { Phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";
import { BlockManager } from "./block-manager.ts";
import { requestSeed } from "./prng.ts";
import { RequestGroup } from "./request-group.ts";
import type { SampleResult } from "./sampler.ts";
import { Scheduler, type ScheduledRow } from "./scheduler.ts";
import type { Sequence } from "./sequence.ts";
import { StepSampler } from "./step-sampler.ts";
import { StepTimings } from "./step-timings.ts";

export interface EngineConfig {
  maxBatch: number;
  maxBatchTokens: number;
  /** onnxruntime intra-op threads for the engine's own session (the sampler's preselector); default: the machine's cores. */
  intraOpThreads?: number;
}

export interface EngineSubmission {
  id: string;
  request: ChatRequest;
  /** The job's prefix-cache salt (16 hex digits, shared/protocol.ts); absent: the unsalted cache. */
  cacheSalt?: string;
  /** After a failover: tokens each choice already published, and which choices had finished. */
  resume?: { tokens: number[][]; finishReasons: Array<FinishReason | null> };
}

export interface EngineStats {
  running: number;
  waiting: number;
  requests: number;
  kvBlocksTotal: number;
  kvBlocksUsed: number;
  kvBlocksFree: number;
  kvBytesUsed: number;
  prefixCacheHitRate: number;
  prefixCacheHitTokens: number;
  preemptions: number;
  steps: number;
  /** Cumulative ms in forward passes and in session.run, for the overhead share. */
  forwardMs: number;
  sessionRunMs: number;
  stepMs: number;
  /** Cumulative ms in the sampler (the largest engine cost outside session.run). */
  samplerMs: number;
  generatedTokens: number;
}

export type EventSink = (requestId: string, event: StreamEvent) => void;

export class LlmEngine {
  private readonly scheduler: Scheduler;
  private readonly blocks: BlockManager;
  private readonly groups = new Map<string, RequestGroup>();
  private readonly contextLimit: number;
  private readonly sampler: StepSampler;
  private readonly timings = new StepTimings();

  constructor(
    private readonly runner: StepRunner,
    private readonly tokenizer: Phi4Tokenizer,
    config: EngineConfig,
    private readonly emit: EventSink,
  ) {
    this.blocks = new BlockManager(runner.numBlocks, runner.blockSize);
    this.sampler = new StepSampler(
      runner.config.vocabSize,
      config.intraOpThreads ?? os.availableParallelism(),
      (seq) => this.groups.get(seq.requestId)?.samplingOf(seq),
      this.timings,
    );
    this.scheduler = new Scheduler(
      { maxBatch: config.maxBatch, maxBatchTokens: config.maxBatchTokens },
      this.blocks,
      (seq) => this.isReady(seq),
    );
    // A sequence must fit in the cache on its own, or it could never run.
    this.contextLimit = Math.min(runner.config.contextLength, runner.numBlocks * runner.blockSize);
  }

  get hasWork(): boolean {
    return this.scheduler.hasWork;
  }

  /** Accepts a request: tokenizes, checks the context, queues its choices, emits `start` (or `error`). */
  submit(sub: EngineSubmission, nodeName: string): void {
    const { id, request } = sub;
    if (this.groups.has(id)) {
      this.emit(id, errorEvent(ApiError.invalid(`request ${id} is already running`, null, "duplicate_request")));
      return;
    }
    // Tokenizing stops past the context window: a huge prompt is refused without tokenizing all of it.
    const promptIds = renderChat(this.tokenizer, request.messages, this.contextLimit).ids;
    const room = this.contextLimit - promptIds.length;
    if (room <= 0 || (request.maxTokens !== null && request.maxTokens > room)) {
      const asked = request.maxTokens ?? 0;
      const inMessages = promptIds.length > this.contextLimit ? `more than ${this.contextLimit}` : String(promptIds.length);
      this.emit(id, errorEvent(ApiError.invalid(
        `This model's maximum context length is ${this.contextLimit} tokens. However, you requested ` +
          `${promptIds.length > this.contextLimit ? "more than " : ""}${promptIds.length + asked} tokens (${inMessages} in the messages, ${asked} in the completion). ` +
          "Please reduce the length of the messages or completion.",
        "messages", "context_length_exceeded",
      )));
      return;
    }
    const seed = requestSeed(request.seed);
    const group = new RequestGroup(
      id, request, seed, promptIds, request.maxTokens ?? room, this.tokenizer, this.runner.config.eosTokenIds,
      sub.resume?.tokens, sub.resume?.finishReasons,
    );
    this.groups.set(id, group);
    if (sub.cacheSalt !== undefined) {
      const salt = [parseInt(sub.cacheSalt.slice(0, 8), 16) >>> 0, parseInt(sub.cacheSalt.slice(8, 16), 16) >>> 0] as const;
      for (const seq of group.sequences) seq.cacheSalt = salt;
    }
    this.emit(id, { type: "start", promptTokens: promptIds.length, n: request.n, seed: seed.toString(), node: nodeName });
    for (const seq of group.sequences) {
      const choice = group.choices[seq.choiceIndex];
      if (choice.finishReason !== null) continue; // finished before the failover
      if (seq.numOutputTokens >= group.maxTokens) {
        this.emit(id, group.finishEmpty(seq, "length"));
        continue;
      }
      this.scheduler.add(seq);
    }
    if (group.isFinished) this.retire(group, false);
  }

  /** Stops a request now (client gone): frees its blocks, emits `done` with `cancelled`. */
  abort(id: string): boolean {
    const group = this.groups.get(id);
    if (!group) return false;
    for (const seq of group.sequences) if (!seq.isFinished) this.scheduler.finish(seq);
    this.retire(group, true);
    return true;
  }

  /** One engine step (nano-vllm's shape). Returns false when there was nothing to run. */
  async step(): Promise<boolean> {
    const started = performance.now();
    const rows = this.scheduler.schedule();
    if (rows.length === 0) return false;
    const output = await this.run(rows);
    this.scheduler.postprocess(rows);
    const results = await this.sampler.sample(rows, output);
    this.publish(rows, results);
    this.timings.stepDone(started);
    return true;
  }

  /** Frees the engine's own onnxruntime session (the sampler's preselector); the runner is its owner's. */
  release(): Promise<void> {
    return this.sampler.release();
  }

  stats(): EngineStats {
    const b = this.blocks.stats();
    return {
      running: this.scheduler.running.length,
      waiting: this.scheduler.waiting.length,
      requests: this.groups.size,
      kvBlocksTotal: b.total,
      kvBlocksUsed: b.used,
      kvBlocksFree: b.free,
      kvBytesUsed: b.used * this.runner.kvBytesPerBlock,
      prefixCacheHitRate: b.hitRate,
      prefixCacheHitTokens: b.cachedHits,
      preemptions: this.scheduler.preemptions,
      steps: this.timings.steps,
      forwardMs: this.timings.forwardMs,
      sessionRunMs: this.timings.sessionRunMs,
      stepMs: this.timings.stepMs,
      samplerMs: this.timings.samplerMs,
      generatedTokens: this.timings.generatedTokens,
    };
  }

  /** One forward pass over the scheduled rows, each fed from its first uncomputed token. */
  private async run(rows: readonly ScheduledRow[]): Promise<RunnerOutput> {
    const batch = rows.map((row) => ({
      tokens: row.seq.tokens.slice(row.seq.numComputedTokens, row.seq.numComputedTokens + row.numTokens),
      pastLen: row.seq.numComputedTokens,
      blockTable: row.seq.blockTable,
      needs: this.sampler.needs(row),
    }));
    const started = performance.now();
    const output = await this.runner.run(batch);
    this.timings.forwardDone(started, this.runner.lastStepStats.sessionRunMs);
    return output;
  }

  /** Each sampled token: into its choice (text, stop strings, finish), out as a delta; finished sequences leave. */
  private publish(rows: readonly ScheduledRow[], results: ReadonlyArray<SampleResult | null>): void {
    for (let r = 0; r < rows.length; r++) {
      const result = results[r];
      if (result === null) continue;
      const seq = rows[r].seq;
      const group = this.groups.get(seq.requestId)!;
      const delta = group.accept(seq, result, this.contextLimit);
      this.timings.generatedTokens++;
      this.emit(group.id, delta);
      if (delta.finishReason !== undefined) {
        this.scheduler.finish(seq);
        if (group.isFinished) this.retire(group, false);
      }
    }
  }

  /** n>1: later choices wait until the first choice's prompt blocks are in the prefix cache, then share them. */
  private isReady(seq: Sequence): boolean {
    if (seq.choiceIndex === 0) return true;
    const group = this.groups.get(seq.requestId);
    if (!group) return true;
    const first = group.choices[0];
    return first.finishReason !== null || first.seq.numComputedTokens >= group.promptIds.length;
  }

  private retire(group: RequestGroup, cancelled: boolean): void {
    this.groups.delete(group.id);
    this.emit(group.id, group.doneEvent(cancelled));
  }
}

function errorEvent(e: ApiError): StreamEvent {
  return { type: "error", status: e.status, errorType: e.type, code: e.code, message: e.message, param: e.param };
}
