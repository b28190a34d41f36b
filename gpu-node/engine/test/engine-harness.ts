/** Drives an in-process LlmEngine step by step and collects each request's events, for tests and benchmarks. */
import type { StreamEvent } from "../../../shared/protocol.ts";
import { parseCompletionRequest } from "../../../shared/completion-request-schema.ts";
import { parseChatRequest, type ChatRequest } from "../../../shared/request-schema.ts";
import { loadRunner } from "../../runner/load-runner.ts";
import type { ExecutionProvider } from "../../runner/execution-provider.ts";
import type { StepRunner } from "../../runner/step-runner.ts";
import { phi4Tokenizer } from "../../tokenizer/phi4-tokenizer.ts";
import { LlmEngine, type EngineConfig, type EngineSubmission } from "../llm-engine.ts";

export class EngineHarness {
  readonly events = new Map<string, StreamEvent[]>();
  readonly engine: LlmEngine;

  private constructor(readonly runner: StepRunner, config: EngineConfig) {
    this.engine = new LlmEngine(runner, phi4Tokenizer(), config, (id, e) => {
      let list = this.events.get(id);
      if (!list) this.events.set(id, (list = []));
      list.push(e);
    });
  }

  static async create(modelDir: string, opts: { kvTokens?: number; blockSize?: number; maxBatch?: number; maxBatchTokens?: number; ep?: ExecutionProvider } = {}) {
    const blockSize = opts.blockSize ?? 16;
    const intraOpThreads = 2;
    const runner = await loadRunner({ modelDir, ep: opts.ep ?? "cpu", numBlocks: Math.ceil((opts.kvTokens ?? 8192) / blockSize), blockSize, intraOpThreads });
    return new EngineHarness(runner, { maxBatch: opts.maxBatch ?? 32, maxBatchTokens: opts.maxBatchTokens ?? 512, intraOpThreads });
  }

  /** Resolves once the request is admitted (a request with a grammar waits for its compile). */
  async submit(id: string, body: Record<string, unknown>, resume?: EngineSubmission["resume"], parse = request): Promise<void> {
    await this.engine.submit({ id, request: parse(body), ...(resume ? { resume } : {}) }, "test-node");
  }

  async runUntilIdle(maxSteps = 100_000): Promise<number> {
    let steps = 0;
    while (this.engine.hasWork && steps < maxSteps) {
      await this.engine.step();
      steps++;
    }
    return steps;
  }

  /** Output tokens of each choice, from the request's delta events. */
  tokens(id: string): number[][] {
    const out: number[][] = [];
    for (const e of this.events.get(id) ?? []) if (e.type === "delta") (out[e.index] ??= []).push(...e.tokens);
    return out;
  }

  text(id: string, index = 0): string {
    let s = "";
    for (const e of this.events.get(id) ?? []) if (e.type === "delta" && e.index === index) s += e.text;
    return s;
  }

  last(id: string): StreamEvent | undefined {
    return this.events.get(id)?.at(-1);
  }

  async release(): Promise<void> {
    await this.engine.release();
    await this.runner.release();
  }
}

/** A legacy `/v1/completions` body as the engine gets it. */
export function completionRequest(body: Record<string, unknown>): ChatRequest {
  const parsed = parseCompletionRequest({ model: "microsoft/phi-4", prompt: "Once upon a time", ...body });
  if (!parsed.ok) throw parsed.error;
  return parsed.request;
}

export function request(body: Record<string, unknown>): ChatRequest {
  const parsed = parseChatRequest({ model: "microsoft/phi-4", messages: [{ role: "user", content: "Tell me a story." }], ...body });
  if (!parsed.ok) throw parsed.error;
  return parsed.request;
}
