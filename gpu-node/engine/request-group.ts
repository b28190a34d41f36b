/**
 * One request as the engine sees it: its prompt, its seed, and its n choices (one Sequence each),
 * with the per-choice state that turns sampled ids into client-visible deltas: the incremental
 * detokenizer, the stop-string matcher, the penalty counts, the grammar constraint and (when tools may
 * be called) the tool-call parser. Produces the contract's stream events.
 *
 * A legacy completion may carry several prompts: each gets `n` choices, numbered prompt by prompt.
 */
import type { ChatRequest } from "../../shared/request-schema.ts";
import type { FinishReason, TokenLogprob, ToolCallDelta, TopLogprob } from "../../shared/openai-types.ts";
import { ToolCallParser } from "../tools/tool-call-parser.ts";
import { toolCallId } from "../tools/tool-call-id.ts";
import type { LogitsConstraint } from "./logits-constraint.ts";
import type { StreamEvent } from "../../shared/protocol.ts";
import { IncrementalDecoder } from "../tokenizer/incremental-decoder.ts";
import type { Phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";
import { Sequence } from "./sequence.ts";
import { StopMatcher } from "./stop-matcher.ts";
import type { SampleResult, SamplingParams } from "./sampling-params.ts";
import { seedWords } from "./prng.ts";
import type { ChoiceSampling } from "./step-sampler.ts";
import { TokenCounts } from "./token-counts.ts";

interface Choice {
  seq: Sequence;
  decoder: IncrementalDecoder;
  stop: StopMatcher | null;
  /** Its penalty counts and constraint: the state sampling reads and `accept` advances. */
  sampling: ChoiceSampling;
  /** Separates tool calls from content; null when the request cannot call tools. */
  tools: ToolCallParser | null;
  finishReason: FinishReason | null;
}

export class RequestGroup {
  readonly choices: Choice[];
  readonly sampling: SamplingParams;
  readonly seedLo: number;
  readonly seedHi: number;
  readonly eos: ReadonlySet<number>;

  constructor(
    readonly id: string,
    readonly request: ChatRequest,
    readonly seed: bigint,
    /** One prompt for chat; a legacy completion's prompts, each with `request.n` choices. */
    readonly prompts: number[][],
    /** Most output tokens per choice (the request's max_tokens, or what the context leaves). */
    readonly maxTokens: number,
    private readonly tokenizer: Phi4Tokenizer,
    eosTokenIds: number[],
    /** Tokens each choice generated before a failover (replayed, not re-sampled, not re-published). */
    resumed: ReadonlyArray<ReadonlyArray<number>> = [],
    resumedFinish: ReadonlyArray<FinishReason | null> = [],
    /** Structured outputs: one grammar constraint per choice (see logits-constraint.ts). */
    constraints: ReadonlyArray<LogitsConstraint | null> = [],
  ) {
    [this.seedLo, this.seedHi] = seedWords(seed);
    this.eos = new Set(eosTokenIds);
    this.sampling = {
      temperature: request.temperature,
      topP: request.topP,
      topK: request.topK,
      minP: request.minP,
      presencePenalty: request.presencePenalty,
      frequencyPenalty: request.frequencyPenalty,
      repetitionPenalty: request.repetitionPenalty,
      logitBias: request.logitBias,
      logprobs: request.logprobs,
      topLogprobs: request.topLogprobs,
    };
    this.choices = [];
    const toolNames = request.tools.length > 0 && request.toolChoice !== "none" ? new Set(request.tools.map((t) => t.name)) : null;
    for (let i = 0; i < prompts.length * request.n; i++) {
      const before = resumed[i] ?? [];
      const promptIds = this.promptOf(i);
      const first = this.firstOfPrompt(i);
      const choice: Choice = {
        seq: new Sequence(id, i, promptIds, before),
        decoder: new IncrementalDecoder(tokenizer),
        stop: request.stop.length > 0 ? new StopMatcher(request.stop) : null,
        sampling: {
          params: this.sampling,
          // Each choice counts its own output; the prompt is the request's (repetition_penalty).
          counts: i === first ? new TokenCounts(promptIds) : this.choices[first].sampling.counts.forSibling(),
          constraint: constraints[i] ?? null,
          seedLo: this.seedLo,
          seedHi: this.seedHi,
        },
        tools: toolNames && new ToolCallParser(toolNames, (call) => toolCallId(id, i, call)),
        finishReason: resumedFinish[i] ?? null,
      };
      // Replay what was already published so detokenizer, stop matcher, penalties and constraint stand where they stood.
      for (const token of before) this.advance(choice, token);
      this.choices.push(choice);
    }
  }

  /** The prompt choice `i` continues. */
  promptOf(i: number): number[] {
    return this.prompts[Math.floor(i / this.request.n)];
  }

  /** The first choice of the same prompt (its siblings share its prompt blocks and prompt token set). */
  firstOfPrompt(i: number): number {
    return i - (i % this.request.n);
  }

  get promptTokens(): number {
    let total = 0;
    for (const p of this.prompts) total += p.length;
    return total;
  }

  get sequences(): Sequence[] {
    return this.choices.map((c) => c.seq);
  }

  get isFinished(): boolean {
    return this.choices.every((c) => c.finishReason !== null);
  }

  get completionTokens(): number {
    let total = 0;
    for (const c of this.choices) total += c.seq.numOutputTokens;
    return total;
  }

  samplingOf(seq: Sequence): ChoiceSampling {
    return this.choices[seq.choiceIndex].sampling;
  }

  /** Takes one sampled token for a choice; returns the delta event to publish. */
  accept(seq: Sequence, result: SampleResult, contextLimit: number): Extract<StreamEvent, { type: "delta" }> {
    const choice = this.choices[seq.choiceIndex];
    const token = result.token;
    seq.tokens.push(token);
    choice.sampling.counts.add(token);
    choice.sampling.constraint?.accept(token);
    let text = "";
    let finish: FinishReason | null = null;
    if (this.eos.has(token)) {
      finish = "stop";
      text = this.drain(choice, choice.decoder.flush());
    } else {
      const piece = choice.decoder.push(token);
      if (choice.stop) {
        const r = choice.stop.push(piece);
        text = r.emit;
        if (r.stopped) finish = "stop";
      } else {
        text = piece;
      }
      if (finish === null && (seq.numOutputTokens >= this.maxTokens || seq.numTokens >= contextLimit)) {
        finish = "length";
        text += this.drain(choice, choice.decoder.flush());
      }
    }
    let toolCalls: ToolCallDelta[] | undefined;
    if (choice.tools) {
      const parsed = choice.tools.push(text);
      if (finish !== null) {
        const rest = choice.tools.finish();
        parsed.content += rest.content;
        parsed.calls.push(...rest.calls);
        if (finish === "stop" && choice.tools.callCount > 0) finish = "tool_calls";
      }
      text = parsed.content;
      if (parsed.calls.length > 0) toolCalls = parsed.calls;
    }
    choice.finishReason = finish;
    const delta: Extract<StreamEvent, { type: "delta" }> = { type: "delta", index: seq.choiceIndex, text, tokens: [token] };
    if (toolCalls) delta.toolCalls = toolCalls;
    if (this.request.logprobs && !this.eos.has(token)) delta.logprobs = [this.logprobEntry(result)];
    if (finish !== null) delta.finishReason = finish;
    return delta;
  }

  /** Ends a choice without a token (max_tokens 0, or all text already out): the closing delta. */
  finishEmpty(seq: Sequence, reason: FinishReason): Extract<StreamEvent, { type: "delta" }> {
    this.choices[seq.choiceIndex].finishReason = reason;
    return { type: "delta", index: seq.choiceIndex, text: "", tokens: [], finishReason: reason };
  }

  doneEvent(cancelled = false): Extract<StreamEvent, { type: "done" }> {
    return {
      type: "done",
      finishReasons: this.choices.map((c) => c.finishReason ?? "stop"),
      usage: { promptTokens: this.promptTokens, completionTokens: this.completionTokens },
      ...(cancelled ? { cancelled: true } : {}),
    };
  }

  /** A replayed token: through penalties, constraint, detokenizer and stop matcher, without publishing it. */
  private advance(choice: Choice, token: number): void {
    choice.sampling.counts.add(token);
    choice.sampling.constraint?.accept(token);
    if (this.eos.has(token)) return;
    const piece = choice.decoder.push(token);
    const text = choice.stop ? choice.stop.push(piece).emit : piece;
    choice.tools?.push(text);
  }

  /** Final text of a finishing choice: what the stop matcher still holds, unless a stop string ends it. */
  private drain(choice: Choice, tail: string): string {
    if (!choice.stop) return tail;
    const r = choice.stop.push(tail);
    return r.stopped ? r.emit : r.emit + choice.stop.flush();
  }

  private logprobEntry(result: SampleResult): TokenLogprob {
    const top: TopLogprob[] = [];
    // A grammar can leave fewer allowed tokens than asked for: the impossible ones are not listed.
    for (const t of result.top ?? []) if (t.logprob > -Infinity) top.push(this.tokenLogprob(t.token, t.logprob));
    return { ...this.tokenLogprob(result.token, result.logprob), top_logprobs: top };
  }

  private tokenLogprob(token: number, logprob: number): TopLogprob {
    const bytes = this.tokenizer.tokenBytes(token);
    return { token: new TextDecoder().decode(bytes), logprob, bytes: [...bytes] };
  }
}
