/**
 * The one request schema: every range and rule of docs/api.md, checked at the edge before anything is
 * queued. A rejection is an ApiError naming the offending `param`, as OpenAI does.
 */
import { z } from "zod";
import { ApiError } from "./errors.ts";
import {
  LOGIT_BIAS, MAX_MESSAGES, MAX_N, MAX_OUTPUT_TOKENS, MAX_STOP_SEQUENCE_CHARS, MAX_STOP_SEQUENCES,
  MAX_TOP_LOGPROBS, MAX_USER_ID_CHARS, MIN_P, PENALTY, REPETITION_PENALTY, SEED_EXCLUSIVE_MAX,
  TEMPERATURE, TOP_K, TOP_P, VOCAB_SIZE,
} from "./limits.ts";
import type { ChatMessage, Role } from "./openai-types.ts";

// Workers forbid eval; zod must not try its JIT there.
z.config({ jitless: true });

/** The request as the rest of the system sees it: defaults applied, aliases resolved. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  stream: boolean;
  includeUsage: boolean;
  /** null: generate until a stop condition or the end of the context. */
  maxTokens: number | null;
  temperature: number;
  topP: number;
  minP: number;
  topK: number;
  presencePenalty: number;
  frequencyPenalty: number;
  repetitionPenalty: number;
  /** Decimal string: seeds go up to 2^63, beyond what a JSON number carries exactly. null = draw one. */
  seed: string | null;
  stop: string[];
  n: number;
  logprobs: boolean;
  topLogprobs: number;
  /** token id → bias added to its logit. */
  logitBias: Record<number, number>;
  user: string | null;
  toolChoice: "none" | "auto";
}

const number = (what: string) =>
  z.number({ error: (i) => (i.input === undefined ? `'${what}' is required` : `'${what}' must be a number`) })
    .refine(Number.isFinite, { error: `'${what}' must be a finite number` });

function range(name: string, min: number, max: number) {
  return number(name).refine((v) => v >= min && v <= max, { error: `'${name}' must be between ${min} and ${max}` });
}

function intRange(name: string, min: number, max: number) {
  return number(name)
    .refine(Number.isInteger, { error: `'${name}' must be an integer` })
    .refine((v) => v >= min && v <= max, { error: `'${name}' must be an integer between ${min} and ${max}` });
}

const textPart = z.object({
  type: z.literal("text", { error: "only text content parts are supported (Phi-4 is a text model)" }),
  text: z.string({ error: "a text part needs a string 'text'" }),
});

const content = z.union([z.string(), z.array(textPart).max(MAX_MESSAGES), z.null()], {
  error: "'content' must be a string or an array of text parts",
});

const message = z.object({
  role: z.enum(["system", "user", "assistant", "tool"], {
    error: "'role' must be one of 'system', 'user', 'assistant', 'tool'",
  }),
  content: content.optional(),
  name: z.string({ error: "'name' must be a string" }).max(256).optional(),
  tool_call_id: z.string({ error: "'tool_call_id' must be a string" }).optional(),
}, { error: "each message must be an object" });

const stop = z.union([
  z.string().min(1, { error: "stop sequences must not be empty" }).max(MAX_STOP_SEQUENCE_CHARS),
  z.array(z.string().min(1, { error: "stop sequences must not be empty" }).max(MAX_STOP_SEQUENCE_CHARS, {
    error: `a stop sequence is at most ${MAX_STOP_SEQUENCE_CHARS} characters`,
  }), { error: "'stop' must be a string or an array of strings" })
    .max(MAX_STOP_SEQUENCES, { error: `'stop' takes at most ${MAX_STOP_SEQUENCES} sequences` }),
], { error: "'stop' must be a string or an array of strings" });

const logitBias = z.record(
  z.string().regex(/^(0|[1-9][0-9]*)$/, { error: "logit_bias keys must be token ids" })
    .refine((k) => Number(k) < VOCAB_SIZE, { error: `logit_bias keys must be token ids below ${VOCAB_SIZE}` }),
  range("logit_bias", LOGIT_BIAS.min, LOGIT_BIAS.max),
  { error: "'logit_bias' must be an object mapping token ids to numbers" },
).refine((m) => Object.keys(m).length <= LOGIT_BIAS.maxEntries, {
  error: `'logit_bias' takes at most ${LOGIT_BIAS.maxEntries} entries`,
});

const body = z.object({
  model: z.string({ error: (i) => (i.input === undefined ? "'model' is required" : "'model' must be a string") })
    .min(1, { error: "'model' must not be empty" }),
  messages: z.array(message, {
    error: (i) => (i.input === undefined ? "'messages' is required" : "'messages' must be an array"),
  }).min(1, { error: "'messages' must contain at least one message" })
    .max(MAX_MESSAGES, { error: `'messages' takes at most ${MAX_MESSAGES} messages` }),
  stream: z.boolean({ error: "'stream' must be a boolean" }).nullish(),
  stream_options: z.object({
    include_usage: z.boolean({ error: "'include_usage' must be a boolean" }).nullish(),
  }, { error: "'stream_options' must be an object" }).nullish(),
  max_tokens: intRange("max_tokens", 0, MAX_OUTPUT_TOKENS).nullish(),
  max_completion_tokens: intRange("max_completion_tokens", 0, MAX_OUTPUT_TOKENS).nullish(),
  temperature: range("temperature", TEMPERATURE.min, TEMPERATURE.max).nullish(),
  top_p: number("top_p").refine((v) => v > TOP_P.minExclusive && v <= TOP_P.max, {
    error: "'top_p' must be greater than 0 and at most 1",
  }).nullish(),
  min_p: range("min_p", MIN_P.min, MIN_P.max).nullish(),
  top_k: intRange("top_k", TOP_K.min, TOP_K.max).nullish(),
  presence_penalty: range("presence_penalty", PENALTY.min, PENALTY.max).nullish(),
  frequency_penalty: range("frequency_penalty", PENALTY.min, PENALTY.max).nullish(),
  repetition_penalty: range("repetition_penalty", REPETITION_PENALTY.min, REPETITION_PENALTY.max).nullish(),
  seed: number("seed")
    .refine(Number.isInteger, { error: "'seed' must be an integer" })
    .refine((v) => v >= 0 && v < SEED_EXCLUSIVE_MAX, { error: "'seed' must be at least 0 and below 2^63" })
    .nullish(),
  stop: stop.nullish(),
  n: intRange("n", 1, MAX_N).nullish(),
  logprobs: z.boolean({ error: "'logprobs' must be a boolean" }).nullish(),
  top_logprobs: intRange("top_logprobs", 0, MAX_TOP_LOGPROBS).nullish(),
  logit_bias: logitBias.nullish(),
  user: z.string({ error: "'user' must be a string" }).max(MAX_USER_ID_CHARS, {
    error: `'user' is at most ${MAX_USER_ID_CHARS} characters`,
  }).nullish(),
  tool_choice: z.enum(["none", "auto"], { error: "'tool_choice' must be 'none' or 'auto'" }).nullish(),
  tools: z.array(z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }), {
    error: "'tools' must be an array of function tools",
  }).nullish(),
}, { error: "the request body must be a JSON object" });

/** "messages.0.content" → "messages[0].content", OpenAI's spelling of a param path. */
function paramName(path: ReadonlyArray<PropertyKey>): string | null {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : out ? `.${String(key)}` : String(key);
  return out || null;
}

function messageText(m: z.infer<typeof message>): string {
  if (m.content == null) return "";
  if (typeof m.content === "string") return m.content;
  return m.content.map((p) => p.text).join("");
}

/** Rules across messages (docs/api.md): one system message at most, a user message, ending on user or tool. */
function checkMessageRules(messages: ChatMessage[]): ApiError | null {
  const systems = messages.filter((m) => m.role === "system").length;
  if (systems > 1) return ApiError.invalid("at most one 'system' message is allowed", "messages");
  if (!messages.some((m) => m.role === "user")) {
    return ApiError.invalid("'messages' must contain at least one 'user' message", "messages");
  }
  const last = messages.length - 1;
  if (messages[last].role !== "user" && messages[last].role !== "tool") {
    return ApiError.invalid("the last message must have role 'user' or 'tool'", `messages[${last}].role`);
  }
  return null;
}

export type ParseResult = { ok: true; request: ChatRequest } | { ok: false; error: ApiError };

export function parseChatRequest(input: unknown): ParseResult {
  const parsed = body.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = paramName(issue.path);
    const missing = issue.code === "invalid_type" && /is required$/.test(issue.message);
    const code = missing ? "missing_required_parameter" : issue.code === "invalid_type" ? "invalid_type" : "invalid_value";
    const message = param && !issue.message.includes(`'${param}'`) ? `Invalid '${param}': ${issue.message}` : issue.message;
    return { ok: false, error: ApiError.invalid(message, param, code) };
  }
  const b = parsed.data;
  const messages: ChatMessage[] = b.messages.map((m) => ({
    role: m.role as Role,
    content: messageText(m),
    ...(m.name !== undefined ? { name: m.name } : {}),
    ...(m.tool_call_id !== undefined ? { tool_call_id: m.tool_call_id } : {}),
  }));
  const ruleError = checkMessageRules(messages);
  if (ruleError) return { ok: false, error: ruleError };
  if (b.stream_options != null && b.stream !== true) {
    return { ok: false, error: ApiError.invalid("'stream_options' is only allowed when 'stream' is true", "stream_options") };
  }
  if (b.top_logprobs != null && b.top_logprobs > 0 && b.logprobs !== true) {
    return { ok: false, error: ApiError.invalid("'top_logprobs' requires 'logprobs' to be true", "top_logprobs") };
  }
  const logitBias: Record<number, number> = {};
  for (const [k, v] of Object.entries(b.logit_bias ?? {})) logitBias[Number(k)] = v;
  return {
    ok: true,
    request: {
      model: b.model,
      messages,
      stream: b.stream ?? false,
      includeUsage: b.stream_options?.include_usage ?? false,
      maxTokens: b.max_completion_tokens ?? b.max_tokens ?? null,
      temperature: b.temperature ?? TEMPERATURE.default,
      topP: b.top_p ?? TOP_P.default,
      minP: b.min_p ?? MIN_P.default,
      topK: b.top_k ?? TOP_K.default,
      presencePenalty: b.presence_penalty ?? PENALTY.default,
      frequencyPenalty: b.frequency_penalty ?? PENALTY.default,
      repetitionPenalty: b.repetition_penalty ?? REPETITION_PENALTY.default,
      seed: b.seed == null ? null : BigInt(b.seed).toString(),
      stop: b.stop == null ? [] : typeof b.stop === "string" ? [b.stop] : b.stop,
      n: b.n ?? 1,
      logprobs: b.logprobs ?? false,
      topLogprobs: b.top_logprobs ?? 0,
      logitBias,
      user: b.user ?? null,
      toolChoice: b.tool_choice ?? "auto",
    },
  };
}
