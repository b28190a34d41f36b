/**
 * The one request schema: every range and rule of docs/api.md, checked at the edge before anything is
 * queued. A rejection is an ApiError naming the offending `param`, as OpenAI does.
 */
import { z } from "zod";
import { ApiError } from "./errors.ts";
import { checkJsonSchema } from "./json-schema-support.ts";
import {
  LOGIT_BIAS, MAX_MESSAGES, MAX_TOOLS, MAX_N, MAX_OUTPUT_TOKENS, MAX_STOP_SEQUENCE_CHARS, MAX_STOP_SEQUENCES,
  MAX_TOP_LOGPROBS, MAX_USER_ID_CHARS, MIN_P, PENALTY, REPETITION_PENALTY, SEED_EXCLUSIVE_MAX,
  TEMPERATURE, TOP_K, TOP_P, VOCAB_SIZE,
} from "./limits.ts";
import type { ChatMessage, ResponseFormat, Role, ToolChoice, ToolFunction } from "./openai-types.ts";

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
  /** Functions the model may call (rendered into the prompt; see docs/tool-calling.md). */
  tools: ToolFunction[];
  /** `auto` when tools are present and none was named; calls are only parsed out when not `none`. */
  toolChoice: ToolChoice;
  /** false: at most one call per choice. */
  parallelToolCalls: boolean;
  responseFormat: ResponseFormat;
  /**
   * `/v1/completions`: the raw prompts (text or token ids), used instead of `messages`; each prompt
   * gets `n` choices, numbered prompt by prompt. null for chat.
   */
  prompts: Array<string | number[]> | null;
  /** `/v1/completions`: each choice starts with its prompt's text. */
  echo: boolean;
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

/** OpenAI's rule for function names. */
const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const functionName = z.string({ error: "a function 'name' must be a string" })
  .regex(FUNCTION_NAME, { error: "a function name is 1 to 64 letters, digits, '_' or '-'" });

const toolCall = z.object({
  id: z.string({ error: "a tool call needs a string 'id'" }).min(1).max(256),
  type: z.literal("function", { error: "a tool call's 'type' must be 'function'" }),
  function: z.object({
    name: functionName,
    arguments: z.string({ error: "a tool call's 'arguments' must be a JSON string" }),
  }, { error: "a tool call needs a 'function' object" }),
}, { error: "each tool call must be an object" });

const message = z.object({
  role: z.enum(["system", "user", "assistant", "tool"], {
    error: "'role' must be one of 'system', 'user', 'assistant', 'tool'",
  }),
  content: content.optional(),
  name: z.string({ error: "'name' must be a string" }).max(256).optional(),
  tool_call_id: z.string({ error: "'tool_call_id' must be a string" }).min(1).max(256).optional(),
  tool_calls: z.array(toolCall, { error: "'tool_calls' must be an array" }).max(MAX_TOOLS).nullish(),
}, { error: "each message must be an object" });

const tool = z.object({
  type: z.literal("function", { error: "only 'function' tools are supported" }),
  function: z.object({
    name: functionName,
    description: z.string({ error: "'description' must be a string" }).nullish(),
    parameters: z.record(z.string(), z.unknown(), { error: "'parameters' must be a JSON Schema object" }).nullish(),
    strict: z.boolean({ error: "'strict' must be a boolean" }).nullish(),
  }, { error: "a tool needs a 'function' object" }),
}, { error: "each tool must be an object" });

const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
], { error: "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": …}}" });

const responseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string({ error: "'name' is required" }).regex(FUNCTION_NAME, { error: "'name' is 1 to 64 letters, digits, '_' or '-'" }),
      description: z.string().nullish(),
      schema: z.union([z.record(z.string(), z.unknown()), z.boolean()], { error: "'schema' must be a JSON Schema object" }).nullish(),
      strict: z.boolean({ error: "'strict' must be a boolean" }).nullish(),
    }, { error: "'json_schema' must be an object with 'name' and 'schema'" }),
  }),
], { error: "'response_format' must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", …}" });

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

/** The generation settings chat and legacy completions share (`logprobs` differs and is not here). */
export const generationFields = {
  model: z.string({ error: (i) => (i.input === undefined ? "'model' is required" : "'model' must be a string") })
    .min(1, { error: "'model' must not be empty" }),
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
  logit_bias: logitBias.nullish(),
  user: z.string({ error: "'user' must be a string" }).max(MAX_USER_ID_CHARS, {
    error: `'user' is at most ${MAX_USER_ID_CHARS} characters`,
  }).nullish(),
};

function withoutModel<T extends { model: unknown }>(fields: T): Omit<T, "model"> {
  const { model: _model, ...rest } = fields;
  return rest;
}

// model and messages first: their errors are the ones a caller needs first.
const body = z.object({
  model: generationFields.model,
  messages: z.array(message, {
    error: (i) => (i.input === undefined ? "'messages' is required" : "'messages' must be an array"),
  }).min(1, { error: "'messages' must contain at least one message" })
    .max(MAX_MESSAGES, { error: `'messages' takes at most ${MAX_MESSAGES} messages` }),
  ...withoutModel(generationFields),
  logprobs: z.boolean({ error: "'logprobs' must be a boolean" }).nullish(),
  top_logprobs: intRange("top_logprobs", 0, MAX_TOP_LOGPROBS).nullish(),
  tool_choice: toolChoice.nullish(),
  tools: z.array(tool, { error: "'tools' must be an array of function tools" })
    .max(MAX_TOOLS, { error: `'tools' takes at most ${MAX_TOOLS} functions` }).nullish(),
  parallel_tool_calls: z.boolean({ error: "'parallel_tool_calls' must be a boolean" }).nullish(),
  response_format: responseFormat.nullish(),
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

/** Each message has what its role needs: text for system and user, an id for tool results. */
function checkMessageFields(messages: ReadonlyArray<z.infer<typeof message>>): ApiError | null {
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    const hasCalls = m.tool_calls != null && m.tool_calls.length > 0;
    if (m.role !== "assistant" && m.tool_calls != null) {
      return ApiError.invalid(`only assistant messages may carry 'tool_calls'`, `messages[${i}].tool_calls`);
    }
    if (m.content == null && !(m.role === "assistant" && hasCalls)) {
      const what = m.role === "assistant" ? "'content' or 'tool_calls'" : "'content'";
      return ApiError.invalid(`a '${m.role}' message must have ${what}`, `messages[${i}].content`, "missing_required_parameter");
    }
    if (m.role === "tool" && m.tool_call_id === undefined) {
      return ApiError.invalid("a 'tool' message must have 'tool_call_id'", `messages[${i}].tool_call_id`, "missing_required_parameter");
    }
  }
  return null;
}

/** A JSON Schema the node cannot enforce is refused here, naming what it does not support. */
export function checkSchemaParam(schema: unknown, param: string): ApiError | null {
  const { problems, unsupported } = checkJsonSchema(schema);
  if (unsupported.length > 0) {
    return ApiError.invalid(
      `Invalid schema for '${param}': unsupported keyword${unsupported.length > 1 ? "s" : ""} ${unsupported.map((k) => `'${k}'`).join(", ")} ` +
        "(constrained decoding could not enforce it).",
      param, "invalid_schema",
    );
  }
  if (problems.length > 0) {
    const p = problems[0];
    return ApiError.invalid(`Invalid schema for '${param}'${p.path ? ` at '${p.path}'` : ""}: ${p.message}.`, param, "invalid_schema");
  }
  return null;
}

/** tools, tool_choice and response_format, checked together; the canonical values for the job. */
export function parseToolsAndFormat(b: {
  tools?: z.infer<typeof tool>[] | null;
  tool_choice?: z.infer<typeof toolChoice> | null;
  parallel_tool_calls?: boolean | null;
  response_format?: z.infer<typeof responseFormat> | null;
}): { ok: true; tools: ToolFunction[]; toolChoice: ToolChoice; parallelToolCalls: boolean; responseFormat: ResponseFormat } | { ok: false; error: ApiError } {
  const tools: ToolFunction[] = [];
  const names = new Set<string>();
  for (const [i, t] of (b.tools ?? []).entries()) {
    const f = t.function;
    if (names.has(f.name)) return { ok: false, error: ApiError.invalid(`two tools are named '${f.name}'`, `tools[${i}].function.name`) };
    names.add(f.name);
    const parameters = f.parameters ?? { type: "object", properties: {} };
    const bad = checkSchemaParam(parameters, `tools[${i}].function.parameters`);
    if (bad) return { ok: false, error: bad };
    tools.push({ name: f.name, description: f.description ?? null, parameters, strict: f.strict ?? false });
  }
  let choice: ToolChoice = tools.length > 0 ? "auto" : "none";
  const asked = b.tool_choice;
  if (asked != null) {
    if (typeof asked === "string") choice = asked;
    else {
      if (!names.has(asked.function.name)) {
        return { ok: false, error: ApiError.invalid(`'tool_choice' names the function '${asked.function.name}', which is not in 'tools'`, "tool_choice.function.name") };
      }
      choice = { name: asked.function.name };
    }
    if (tools.length === 0 && choice !== "none") {
      return { ok: false, error: ApiError.invalid("'tool_choice' is only allowed when 'tools' are given", "tool_choice") };
    }
  }
  let responseFormat: ResponseFormat = { type: "text" };
  const rf = b.response_format;
  if (rf?.type === "json_object") responseFormat = { type: "json_object" };
  else if (rf?.type === "json_schema") {
    const schema = rf.json_schema.schema ?? {};
    const bad = checkSchemaParam(schema, "response_format.json_schema.schema");
    if (bad) return { ok: false, error: bad };
    responseFormat = { type: "json_schema", name: rf.json_schema.name, schema, strict: rf.json_schema.strict ?? false };
  }
  if (responseFormat.type !== "text" && (choice === "required" || typeof choice === "object")) {
    return { ok: false, error: ApiError.invalid("a forced 'tool_choice' cannot be combined with a JSON 'response_format'", "response_format") };
  }
  return { ok: true, tools, toolChoice: choice, parallelToolCalls: b.parallel_tool_calls ?? true, responseFormat };
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

/** A schema rejection as OpenAI words it: the param path, and "missing" vs "invalid". */
export function issueError(issue: z.core.$ZodIssue): ApiError {
  const param = paramName(issue.path);
  const missing = issue.code === "invalid_type" && /is required$/.test(issue.message);
  const code = missing ? "missing_required_parameter" : issue.code === "invalid_type" ? "invalid_type" : "invalid_value";
  const message = param && !issue.message.includes(`'${param}'`) ? `Invalid '${param}': ${issue.message}` : issue.message;
  return ApiError.invalid(message, param, code);
}

/** The settings both endpoints share, with the defaults of docs/api.md applied. */
export function generationSettings(b: z.infer<z.ZodObject<typeof generationFields>>) {
  const logitBias: Record<number, number> = {};
  for (const [k, v] of Object.entries(b.logit_bias ?? {})) logitBias[Number(k)] = v;
  return {
    model: b.model,
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
    logitBias,
    user: b.user ?? null,
  };
}

export function parseChatRequest(input: unknown): ParseResult {
  const parsed = body.safeParse(input);
  if (!parsed.success) return { ok: false, error: issueError(parsed.error.issues[0]) };
  const b = parsed.data;
  const fieldError = checkMessageFields(b.messages);
  if (fieldError) return { ok: false, error: fieldError };
  const messages: ChatMessage[] = b.messages.map((m) => ({
    role: m.role as Role,
    content: messageText(m),
    ...(m.name !== undefined ? { name: m.name } : {}),
    ...(m.tool_call_id !== undefined ? { tool_call_id: m.tool_call_id } : {}),
    ...(m.tool_calls != null && m.tool_calls.length > 0 ? { tool_calls: m.tool_calls } : {}),
  }));
  const ruleError = checkMessageRules(messages);
  if (ruleError) return { ok: false, error: ruleError };
  const toolsAndFormat = parseToolsAndFormat(b);
  if (!toolsAndFormat.ok) return toolsAndFormat;
  if (b.stream_options != null && b.stream !== true) {
    return { ok: false, error: ApiError.invalid("'stream_options' is only allowed when 'stream' is true", "stream_options") };
  }
  if (b.top_logprobs != null && b.top_logprobs > 0 && b.logprobs !== true) {
    return { ok: false, error: ApiError.invalid("'top_logprobs' requires 'logprobs' to be true", "top_logprobs") };
  }
  return {
    ok: true,
    request: {
      ...generationSettings(b),
      messages,
      logprobs: b.logprobs ?? false,
      topLogprobs: b.top_logprobs ?? 0,
      tools: toolsAndFormat.tools,
      toolChoice: toolsAndFormat.toolChoice,
      parallelToolCalls: toolsAndFormat.parallelToolCalls,
      responseFormat: toolsAndFormat.responseFormat,
      prompts: null,
      echo: false,
    },
  };
}

/** Choices (running sequences) a request makes: n per prompt (legacy completions may send several prompts). */
export function choiceCount(request: Pick<ChatRequest, "n" | "prompts">): number {
  return request.n * (request.prompts?.length ?? 1);
}
