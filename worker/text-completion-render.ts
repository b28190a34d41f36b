/**
 * Legacy `/v1/completions` wire objects from the same stream events: `text_completion` chunks and one
 * `text_completion`, with logprobs in the legacy layout (parallel arrays: tokens, token_logprobs,
 * top_logprobs as {token: logprob} maps, text_offset into the choice's text).
 */
import type { Prices } from "../shared/pricing.ts";
import type { FinishReason, TextCompletion, TextCompletionLogprobs, TokenLogprob } from "../shared/openai-types.ts";
import type { StreamEvent } from "../shared/protocol.ts";
import type { CompletionMeta } from "./completion-meta.ts";
import { SYSTEM_FINGERPRINT, usageOf } from "./completion-render.ts";

type Delta = Extract<StreamEvent, { type: "delta" }>;
type Choice = TextCompletion["choices"][number];

/** Legacy logprobs of one delta's tokens; `offset` is where its text starts in the choice's text. */
function legacyLogprobs(entries: ReadonlyArray<TokenLogprob>, offset: number): TextCompletionLogprobs {
  const out: TextCompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let at = offset;
  for (const e of entries) {
    out.tokens.push(e.token);
    out.token_logprobs.push(e.logprob);
    const top: Record<string, number> = {};
    for (const t of e.top_logprobs) top[t.token] = t.logprob;
    out.top_logprobs.push(top);
    out.text_offset.push(at);
    at += e.token.length;
  }
  return out;
}

function emptyLogprobs(): TextCompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

export class TextChunkRenderer {
  private readonly finished: boolean[];
  /** Characters of each choice's text sent so far (text_offset). */
  private readonly sent: number[];

  constructor(private readonly id: string, private readonly meta: CompletionMeta, private readonly prices: Prices) {
    this.finished = new Array<boolean>(meta.n).fill(false);
    this.sent = new Array<number>(meta.n).fill(0);
  }

  private chunk(choices: Choice[], usage?: ReturnType<typeof usageOf>): string {
    const chunk: TextCompletion = {
      id: this.id, object: "text_completion", created: this.meta.created, model: this.meta.model,
      system_fingerprint: SYSTEM_FINGERPRINT, choices,
    };
    if (this.meta.includeUsage) chunk.usage = usage ?? null;
    return JSON.stringify(chunk);
  }

  render(event: StreamEvent): string[] {
    switch (event.type) {
      case "start":
        return [];
      case "delta": {
        const finish = event.finishReason ?? null;
        if (finish !== null) this.finished[event.index] = true;
        const logprobs = this.meta.logprobs ? legacyLogprobs(event.logprobs ?? [], this.sent[event.index]) : null;
        this.sent[event.index] += event.text.length;
        return [this.chunk([{ text: event.text, index: event.index, logprobs, finish_reason: finish }])];
      }
      case "done": {
        const out: string[] = [];
        for (let i = 0; i < this.meta.n; i++) {
          if (this.finished[i]) continue;
          this.finished[i] = true;
          out.push(this.chunk([{ text: "", index: i, logprobs: this.meta.logprobs ? emptyLogprobs() : null, finish_reason: event.finishReasons[i] ?? "stop" }]));
        }
        if (this.meta.includeUsage) out.push(this.chunk([], usageOf(event.usage.promptTokens, event.usage.completionTokens, this.prices)));
        out.push("[DONE]");
        return out;
      }
      case "error":
        return [JSON.stringify({ error: { message: event.message, type: event.errorType, param: event.param, code: event.code } })];
    }
  }
}

export class TextCompletionAssembler {
  private readonly texts: string[];
  private readonly logprobs: TextCompletionLogprobs[];
  private readonly finishReasons: Array<FinishReason | null>;

  constructor(private readonly id: string, private readonly meta: CompletionMeta, private readonly prices: Prices) {
    this.texts = new Array<string>(meta.n).fill("");
    this.logprobs = Array.from({ length: meta.n }, emptyLogprobs);
    this.finishReasons = new Array<FinishReason | null>(meta.n).fill(null);
  }

  add(event: Delta): void {
    const i = event.index;
    if (event.logprobs) {
      const part = legacyLogprobs(event.logprobs, this.texts[i].length);
      const all = this.logprobs[i];
      all.tokens.push(...part.tokens);
      all.token_logprobs.push(...part.token_logprobs);
      all.top_logprobs.push(...part.top_logprobs);
      all.text_offset.push(...part.text_offset);
    }
    this.texts[i] += event.text;
    if (event.finishReason) this.finishReasons[i] = event.finishReason;
  }

  finish(done: Extract<StreamEvent, { type: "done" }>): TextCompletion {
    return {
      id: this.id, object: "text_completion", created: this.meta.created, model: this.meta.model, system_fingerprint: SYSTEM_FINGERPRINT,
      choices: this.texts.map((text, index) => ({
        text, index,
        logprobs: this.meta.logprobs ? this.logprobs[index] : null,
        finish_reason: this.finishReasons[index] ?? done.finishReasons[index] ?? "stop",
      })),
      usage: usageOf(done.usage.promptTokens, done.usage.completionTokens, this.prices),
    };
  }
}
