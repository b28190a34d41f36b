/**
 * The step loop: schedule → one forward pass over the batch → sample each row that reached the end
 * of its known tokens → publish deltas → retire finished sequences. Everything that touches the
 * model goes through ModelRunner; every policy decision comes from the Scheduler.
 * Runs inside the engine's worker thread (engine-thread.ts): ModelRunner.forward blocks its thread.
 */
import { ApiError } from "../../shared/errors.ts";
import type { FinishReason } from "../../shared/openai-types.ts";
import type { StreamEvent } from "../../shared/protocol.ts";
import type { ChatRequest } from "../../shared/request-schema.ts";
import type { ModelRunner } from "../runner/model-runner.ts";
import { renderChat } from "../tokenizer/chat-format.ts";
import type { Phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";
import { BlockManager } from "./block-manager.ts";
import { LogitsPreselector, PRESELECT_K, type PreselectedCandidates } from "./logits-preselector.ts";
import { requestSeed, uniformFromWords } from "./prng.ts";
import { RequestGroup } from "./request-group.ts";
import { Sampler } from "./sampler.ts";
import { Scheduler } from "./scheduler.ts";
import type { Sequence } from "./sequence.ts";

export interface EngineConfig {
  maxBatch: number;
  maxBatchTokens: number;
}

export interface EngineSubmission {
  id: string;
  request: ChatRequest;
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
  private readonly sampler: Sampler;
  /** Built on the first step that can use it; null when onnxruntime could not build it (the JS scan is used). */
  private preselector: LogitsPreselector | null | undefined;
  /** This step's rows to sample, in batch order (reused between steps). */
  private readonly drawRows: number[] = [];
  private steps = 0;
  private forwardMs = 0;
  private sessionRunMs = 0;
  private stepMs = 0;
  private samplerMs = 0;
  private generatedTokens = 0;

  constructor(
    private readonly runner: ModelRunner,
    private readonly tokenizer: Phi4Tokenizer,
    config: EngineConfig,
    private readonly emit: EventSink,
  ) {
    this.blocks = new BlockManager(runner.numBlocks, runner.blockSize);
    this.sampler = new Sampler(runner.config.vocabSize);
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
    const promptIds = renderChat(this.tokenizer, request.messages).ids;
    const room = this.contextLimit - promptIds.length;
    if (room <= 0 || (request.maxTokens !== null && request.maxTokens > room)) {
      const asked = request.maxTokens ?? 0;
      this.emit(id, errorEvent(ApiError.invalid(
        `This model's maximum context length is ${this.contextLimit} tokens. However, you requested ` +
          `${promptIds.length + asked} tokens (${promptIds.length} in the messages, ${asked} in the completion). ` +
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

  /** One engine step. Returns false when there was nothing to run. */
  async step(): Promise<boolean> {
    const t0 = performance.now();
    const { rows } = this.scheduler.schedule();
    if (rows.length === 0) return false;
    const batch = rows.map(({ seq, numTokens }) => ({
      tokens: seq.tokens.slice(seq.numComputedTokens, seq.numComputedTokens + numTokens),
      pastLen: seq.numComputedTokens,
      blockTable: seq.blockTable,
    }));
    const t1 = performance.now();
    const logits = await this.runner.forward(batch);
    this.forwardMs += performance.now() - t1;
    this.sessionRunMs += this.runner.lastStepStats.sessionRunMs;
    const vocab = this.runner.config.vocabSize;
    // Bias and penalties first (sparse, in place), so one preselector run can rank every row that can use it.
    const drawRows = this.drawRows;
    drawRows.length = 0;
    let rankable = 0;
    let logprobRows = 0;
    for (let r = 0; r < rows.length; r++) {
      const { seq, numTokens } = rows[r];
      // Aborted while the forward pass ran (the thread takes messages during it): its blocks are
      // already free, so neither commit them to the prefix cache nor sample.
      if (seq.isFinished || !this.groups.has(seq.requestId)) continue;
      seq.numComputedTokens += numTokens;
      this.blocks.commit(seq);
      if (seq.numComputedTokens < seq.numTokens) continue; // more prompt to prefill
      const group = this.groups.get(seq.requestId)!;
      const ts = performance.now();
      this.sampler.prepare(logits, r * vocab, group.sampling, group.penaltiesOf(seq));
      this.samplerMs += performance.now() - ts;
      drawRows.push(r);
      if (Sampler.usesCandidates(group.sampling, PRESELECT_K)) {
        rankable++;
        if (group.sampling.logprobs) logprobRows++;
      }
    }
    const tp = performance.now();
    const candidates = await this.preselect(logits, rows.length, rankable, logprobRows);
    this.samplerMs += performance.now() - tp;
    for (const r of drawRows) {
      const { seq } = rows[r];
      if (seq.isFinished || !this.groups.has(seq.requestId)) continue; // aborted during the preselector run
      const group = this.groups.get(seq.requestId)!;
      const u = uniformFromWords(group.seedLo, group.seedHi, seq.choiceIndex, seq.numOutputTokens);
      const ts = performance.now();
      const result = this.sampler.draw(logits, r * vocab, group.sampling, u, candidates, r);
      this.samplerMs += performance.now() - ts;
      const delta = group.accept(seq, result, this.contextLimit);
      this.generatedTokens++;
      this.emit(group.id, delta);
      if (delta.finishReason !== undefined) {
        this.scheduler.finish(seq);
        if (group.isFinished) this.retire(group, false);
      }
    }
    this.steps++;
    this.stepMs += performance.now() - t0;
    return true;
  }

  /**
   * Ranks the batch's rows in onnxruntime when at least one row can draw from the candidates. The
   * log-sum-exp (for logprobs) costs about as much as the JS normaliser on a dozen rows, so it is asked
   * for only when a third of the batch wants logprobs; other rows sum their normaliser in JS.
   */
  private async preselect(logits: Float32Array, rows: number, rankable: number, logprobRows: number): Promise<PreselectedCandidates | null> {
    if (rankable === 0) return null;
    if (this.preselector === undefined) {
      try {
        this.preselector = await LogitsPreselector.create(this.runner.config.vocabSize);
      } catch {
        this.preselector = null;
      }
    }
    if (this.preselector === null) return null;
    try {
      return await this.preselector.run(logits, rows, logprobRows * 3 >= rows);
    } catch {
      return null; // the full-row scan gives the same tokens
    }
  }

  /** Frees the engine's own onnxruntime session (the logits preselector); the runner is its owner's. */
  async release(): Promise<void> {
    const preselector = this.preselector;
    this.preselector = null;
    await preselector?.release();
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
      steps: this.steps,
      forwardMs: this.forwardMs,
      sessionRunMs: this.sessionRunMs,
      stepMs: this.stepMs,
      samplerMs: this.samplerMs,
      generatedTokens: this.generatedTokens,
    };
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
