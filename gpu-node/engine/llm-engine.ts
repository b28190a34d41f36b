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
import type { BatchRow, RunnerOutput, StepRunner } from "../runner/step-runner.ts";
import { GrammarCompiler } from "../grammar/grammar-compiler.ts";
import { grammarSpecOf, type GrammarSpec } from "../grammar/grammar-spec.ts";
import type { TokenConstraint } from "../grammar/token-constraint.ts";
import { renderChat } from "../tokenizer/chat-format.ts";
import { withToolsRendered } from "../tools/tool-prompt.ts";
import type { Phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";
import { BlockManager } from "./block-manager.ts";
import { requestSeed } from "./prng.ts";
import { RequestGroup } from "./request-group.ts";
import type { SampleResult } from "./sampling-params.ts";
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
  /** Started on the first request with a grammar (preparing the vocabulary takes ~150 ms). */
  private grammars: Promise<GrammarCompiler> | undefined;
  /** Requests waiting for their grammar to compile → whether they were aborted meanwhile. */
  private readonly compiling = new Map<string, boolean>();

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



  /**
   * Accepts a request: renders and tokenizes its prompt(s), checks the context, compiles its grammar
   * (structured outputs, tool calls; resolves once compiled), queues its choices, emits `start` (or `error`).
   */
  submit(sub: EngineSubmission, nodeName: string): Promise<void> | void {
    const { id, request } = sub;
    if (this.groups.has(id) || this.compiling.has(id)) {
      this.emit(id, errorEvent(ApiError.invalid(`request ${id} is already running`, null, "duplicate_request")));
      return;
    }
    // Tokenizing stops past the context window: a huge prompt is refused without tokenizing all of it.
    const prompts = this.promptsOf(request);
    const longest = Math.max(...prompts.map((p) => p.length));
    const room = this.contextLimit - longest;
    if (room <= 0 || (request.maxTokens !== null && request.maxTokens > room)) {
      const asked = request.maxTokens ?? 0;
      const param = request.prompts ? "prompt" : "messages";
      const over = longest > this.contextLimit ? "more than " : "";
      this.emit(id, errorEvent(ApiError.invalid(
        `This model's maximum context length is ${this.contextLimit} tokens. However, you requested ` +
          `${over}${longest + asked} tokens (${over ? `more than ${this.contextLimit}` : longest} in the ${request.prompts ? "prompt" : "messages"}, ${asked} in the completion). ` +
          `Please reduce the length of the ${request.prompts ? "prompt" : "messages"} or completion.`,
        param, "context_length_exceeded",
      )));
      return;
    }
    const spec = grammarSpecOf(request);
    if (spec === null) return this.admit(sub, nodeName, prompts, room, []);
    this.compiling.set(id, false);
    return this.constraintsFor(spec, prompts.length * request.n).then(
      (constraints) => {
        const aborted = this.compiling.get(id);
        this.compiling.delete(id);
        if (aborted) {
          for (const c of constraints) c.dispose();
          this.emit(id, { type: "done", finishReasons: [], usage: { promptTokens: 0, completionTokens: 0 }, cancelled: true });
          return;
        }
        this.admit(sub, nodeName, prompts, room, constraints);
      },
      (err: Error) => {
        this.compiling.delete(id);
        const param = spec.kind === "json" ? "response_format" : "tools";
        this.emit(id, errorEvent(ApiError.invalid(`Invalid schema in '${param}': ${err.message}`, param, "invalid_schema")));
      },
    );
  }

  /** Token ids of each prompt: the rendered chat (tools included), or a legacy completion's prompts. */
  private promptsOf(request: ChatRequest): number[][] {
    // Stop a little past the context window: a longer prompt is refused anyway (submit).
    const limit = this.contextLimit;
    if (request.prompts) return request.prompts.map((p) => (typeof p === "string" ? this.tokenizer.encodeInto(p, [], limit) : p));
    const messages = withToolsRendered(request.messages, request.tools, request.toolChoice);
    return [renderChat(this.tokenizer, messages, limit).ids];
  }

  /** One constraint per choice; the grammar compiler starts on the first request that needs it. */
  private async constraintsFor(spec: GrammarSpec, choices: number): Promise<TokenConstraint[]> {
    this.grammars ??= GrammarCompiler.create(this.tokenizer, this.runner.config.eosTokenIds);
    const compiler = await this.grammars;
    const compiled = await compiler.compile(spec);
    const out: TokenConstraint[] = [];
    for (let i = 0; i < choices; i++) out.push(await compiler.constraint(compiled));
    return out;
  }

  private admit(sub: EngineSubmission, nodeName: string, prompts: number[][], room: number, constraints: TokenConstraint[]): void {
    const { id, request } = sub;
    const seed = requestSeed(request.seed);
    const group = new RequestGroup(
      id, request, seed, prompts, request.maxTokens ?? room, this.tokenizer, this.runner.config.eosTokenIds,
      sub.resume?.tokens, sub.resume?.finishReasons, constraints,
    );
    this.groups.set(id, group);
    if (sub.cacheSalt !== undefined) {
      const salt = [parseInt(sub.cacheSalt.slice(0, 8), 16) >>> 0, parseInt(sub.cacheSalt.slice(8, 16), 16) >>> 0] as const;
      for (const seq of group.sequences) seq.cacheSalt = salt;
    }
    this.emit(id, { type: "start", promptTokens: group.promptTokens, n: group.choices.length, seed: seed.toString(), node: nodeName });
    if (request.echo && !sub.resume) {
      // Legacy `echo`: each choice's text starts with its prompt.
      for (const seq of group.sequences) {
        const prompt = request.prompts![Math.floor(seq.choiceIndex / request.n)];
        this.emit(id, { type: "delta", index: seq.choiceIndex, text: typeof prompt === "string" ? prompt : this.tokenizer.decode(prompt), tokens: [] });
      }
    }
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
    if (this.compiling.has(id)) {
      this.compiling.set(id, true); // ends as cancelled once its grammar is compiled
      return true;
    }
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
    const batch = rows.map((row) => {
      const batchRow: BatchRow = {
        tokens: row.seq.tokens.slice(row.seq.numComputedTokens, row.seq.numComputedTokens + row.numTokens),
        pastLen: row.seq.numComputedTokens,
        blockTable: row.seq.blockTable,
      };
      this.sampler.describe(row, batchRow, this.runner.ranksCandidates === true);
      return batchRow;
    });
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
    const first = group.choices[group.firstOfPrompt(seq.choiceIndex)];
    if (first.seq === seq) return true;
    return first.finishReason !== null || first.seq.numComputedTokens >= first.seq.promptLength;
  }

  private retire(group: RequestGroup, cancelled: boolean): void {
    this.groups.delete(group.id);
    for (const c of group.choices) (c.sampling.constraint as TokenConstraint | null)?.dispose();
    this.emit(group.id, group.doneEvent(cancelled));
  }
}

function errorEvent(e: ApiError): StreamEvent {
  return { type: "error", status: e.status, errorType: e.type, code: e.code, message: e.message, param: e.param };
}
