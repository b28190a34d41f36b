/**
 * Turns contract stream events into OpenAI's wire objects: `chat.completion.chunk`s for SSE and one
 * `chat.completion` for a non-streaming request. Knows nothing about Redis or HTTP.
 */
import { estimatedCost, type Prices } from "../shared/pricing.ts";
import type { ChatCompletion, ChatCompletionChunk, FinishReason, TokenLogprob, ToolCall, Usage } from "../shared/openai-types.ts";
import type { StreamEvent } from "../shared/protocol.ts";
import type { CompletionMeta } from "./completion-meta.ts";

export const SYSTEM_FINGERPRINT = "fp_phi4_serve_p1";

export function usageOf(promptTokens: number, completionTokens: number, prices: Prices): Usage {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    estimated_cost: estimatedCost(promptTokens, completionTokens, prices),
  };
}

type Choice = ChatCompletionChunk["choices"][number];

/** Renders the chunks of one completion, in stream order; remembers which choices have finished. */
export class ChunkRenderer {
  private readonly finished: boolean[];

  constructor(private readonly id: string, private readonly meta: CompletionMeta, private readonly prices: Prices) {
    this.finished = new Array<boolean>(meta.n).fill(false);
  }

  private chunk(choices: Choice[], usage?: Usage): ChatCompletionChunk {
    const chunk: ChatCompletionChunk = {
      id: this.id,
      object: "chat.completion.chunk",
      created: this.meta.created,
      model: this.meta.model,
      system_fingerprint: SYSTEM_FINGERPRINT,
      choices,
    };
    if (this.meta.includeUsage) chunk.usage = usage ?? null;
    return chunk;
  }

  /**
   * The SSE data payloads (JSON strings) for one event, in order; the last one is "[DONE]" after a
   * `done`. An `error` renders OpenAI's in-stream error object.
   */
  render(event: StreamEvent): string[] {
    switch (event.type) {
      case "start": {
        // The role arrives first, for every choice at once, with empty content (as OpenAI sends it).
        const choices: Choice[] = [];
        for (let i = 0; i < this.meta.n; i++) {
          choices.push({ index: i, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
        }
        return [JSON.stringify(this.chunk(choices))];
      }
      case "delta": {
        const finish = event.finishReason ?? null;
        if (finish !== null) this.finished[event.index] = true;
        const logprobs = this.meta.logprobs ? { content: event.logprobs ?? [] } : null;
        // A delta that only carries tool-call pieces has no content field, as OpenAI streams them.
        const delta: Choice["delta"] = event.toolCalls && event.text === "" ? { tool_calls: event.toolCalls } : { content: event.text };
        if (event.toolCalls && event.text !== "") delta.tool_calls = event.toolCalls;
        return [JSON.stringify(this.chunk([{ index: event.index, delta, logprobs, finish_reason: finish }]))];
      }
      case "done": {
        const out: string[] = [];
        // A choice whose last delta did not carry its reason (a cancelled one) still gets exactly one.
        for (let i = 0; i < this.meta.n; i++) {
          if (this.finished[i]) continue;
          this.finished[i] = true;
          const reason: FinishReason = event.finishReasons[i] ?? "stop";
          out.push(JSON.stringify(this.chunk([{ index: i, delta: {}, logprobs: null, finish_reason: reason }])));
        }
        if (this.meta.includeUsage) {
          out.push(JSON.stringify(this.chunk([], usageOf(event.usage.promptTokens, event.usage.completionTokens, this.prices))));
        }
        out.push("[DONE]");
        return out;
      }
      case "error":
        return [JSON.stringify({ error: { message: event.message, type: event.errorType, param: event.param, code: event.code } })];
    }
  }
}

/** Collects a whole completion for a non-streaming response. */
export class CompletionAssembler {
  private readonly texts: string[];
  private readonly logprobs: TokenLogprob[][];
  private readonly finishReasons: Array<FinishReason | null>;
  private readonly toolCalls: ToolCall[][];

  constructor(private readonly id: string, private readonly meta: CompletionMeta, private readonly prices: Prices) {
    this.toolCalls = Array.from({ length: meta.n }, () => []);
    this.texts = new Array<string>(meta.n).fill("");
    this.logprobs = Array.from({ length: meta.n }, () => []);
    this.finishReasons = new Array<FinishReason | null>(meta.n).fill(null);
  }

  add(event: Extract<StreamEvent, { type: "delta" }>): void {
    this.texts[event.index] += event.text;
    if (event.logprobs) for (const lp of event.logprobs) this.logprobs[event.index].push(lp);
    if (event.finishReason) this.finishReasons[event.index] = event.finishReason;
    const calls = this.toolCalls[event.index];
    for (const piece of event.toolCalls ?? []) {
      if (piece.id !== undefined) calls[piece.index] = { id: piece.id, type: "function", function: { name: piece.function.name ?? "", arguments: "" } };
      calls[piece.index].function.arguments += piece.function.arguments;
    }
  }

  finish(done: Extract<StreamEvent, { type: "done" }>): ChatCompletion {
    return {
      id: this.id,
      object: "chat.completion",
      created: this.meta.created,
      model: this.meta.model,
      system_fingerprint: SYSTEM_FINGERPRINT,
      choices: this.texts.map((content, index) => ({
        index,
        message: this.toolCalls[index].length > 0
          ? { role: "assistant", content: content === "" ? null : content, refusal: null, tool_calls: this.toolCalls[index] }
          : { role: "assistant", content, refusal: null },
        logprobs: this.meta.logprobs ? { content: this.logprobs[index] } : null,
        finish_reason: this.finishReasons[index] ?? done.finishReasons[index] ?? "stop",
      })),
      usage: usageOf(done.usage.promptTokens, done.usage.completionTokens, this.prices),
    };
  }
}
