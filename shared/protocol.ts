/**
 * The queue protocol between the Worker and the GPU nodes: the job a Worker enqueues and the events a
 * node appends to the request's Redis Stream. Versioned: a node and a Worker that disagree fail loudly.
 */
import { z } from "zod";
import type { ChatRequest } from "./request-schema.ts";
import type { FinishReason, TokenLogprob, ToolCallDelta } from "./openai-types.ts";
import {
  LOGIT_BIAS, MAX_BODY_BYTES, MAX_MESSAGES, MAX_N, MAX_OUTPUT_TOKENS, MAX_STOP_SEQUENCE_CHARS, MAX_STOP_SEQUENCES,
  MAX_TOP_LOGPROBS, MAX_USER_ID_CHARS, PENALTY, REPETITION_PENALTY, SEED_EXCLUSIVE_MAX, TEMPERATURE, TOP_K, VOCAB_SIZE,
} from "./limits.ts";

z.config({ jitless: true });

export const PROTOCOL_VERSION = 2;

/** What the Worker enqueues (BullMQ job data; the job id is `id`). `request.user` is already hashed. */
export interface ChatJob {
  protocol: number;
  id: string;
  /** Unix seconds, echoed in every response object. */
  created: number;
  /** Epoch ms when the Worker enqueued it (queue-wait metric). */
  enqueuedAt: number;
  request: ChatRequest;
  /**
   * Salts the prefix cache's block hashes (16 hex digits): requests share cached blocks only under
   * equal salts, so time to first token reveals nothing about another key's prompts. The Worker sets
   * a hash of the API key's id (or of its cache group, to share within an organisation), never the key.
   * Absent: the unsalted cache every absent-salt job shares.
   */
  cacheSalt?: string;
}

/**
 * One entry of a request's Redis Stream. A stream holds exactly one `start` (a node that resumes
 * after a failover does not publish another), then deltas, then exactly one `done` or `error`.
 * A job cancelled before any node picked it up gets only `done` with `cancelled: true`.
 */
export type StreamEvent =
  | { type: "start"; promptTokens: number; n: number; seed: string; node: string }
  | {
      type: "delta";
      index: number;
      text: string;
      tokens: number[];
      logprobs?: TokenLogprob[];
      /** Pieces of the tool calls this delta's tokens made (tool_choice other than `none`). */
      toolCalls?: ToolCallDelta[];
      /** Set on the last delta of this choice. */
      finishReason?: FinishReason;
    }
  | {
      type: "done";
      finishReasons: FinishReason[];
      usage: { promptTokens: number; completionTokens: number };
      /** True when the client went away and the node stopped early. */
      cancelled?: boolean;
    }
  | { type: "error"; status: number; errorType: string; code: string | null; message: string; param: string | null };

export class ProtocolVersionError extends Error {
  constructor(seen: unknown) {
    super(`protocol version mismatch: this side speaks ${PROTOCOL_VERSION}, the other sent ${String(seen)}; deploy matching versions of the Worker and the GPU nodes`);
    this.name = "ProtocolVersionError";
  }
}

/** Redis Stream entry fields for one event: ["v", version, "e", json]. */
export function encodeStreamEvent(event: StreamEvent): [string, string, string, string] {
  return ["v", String(PROTOCOL_VERSION), "e", JSON.stringify(event)];
}

/** Inverse of encodeStreamEvent; throws ProtocolVersionError on a version mismatch. */
export function decodeStreamEvent(fields: string[]): StreamEvent {
  let version: string | undefined;
  let json: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === "v") version = fields[i + 1];
    else if (fields[i] === "e") json = fields[i + 1];
  }
  if (version !== String(PROTOCOL_VERSION)) throw new ProtocolVersionError(version);
  if (json === undefined) throw new Error("stream entry without an event");
  return JSON.parse(json) as StreamEvent;
}

const finite = z.number().refine(Number.isFinite);
const int = z.number().int();

const jsonObject = z.record(z.string(), z.unknown());

/**
 * The node checks every job again, with the edge's upper bounds (shared/limits.ts): a job written to
 * Redis by anything but a well-behaved Worker must not be able to make a node allocate, tokenize or
 * generate without bound. The model name is checked against the node's own afterwards.
 */
const chatRequestShape = z.object({
  model: z.string().max(256),
  messages: z.array(z.object({
    role: z.enum(["system", "user", "assistant", "tool"]),
    content: z.string().max(MAX_BODY_BYTES),
    name: z.string().max(256).optional(),
    tool_call_id: z.string().max(256).optional(),
    tool_calls: z.array(z.object({
      id: z.string(),
      type: z.literal("function"),
      function: z.object({ name: z.string(), arguments: z.string().max(MAX_BODY_BYTES) }),
    })).optional(),
  })).max(MAX_MESSAGES)
    // A body the edge accepted holds at most MAX_BODY_BYTES of text in all.
    .refine((messages) => messages.reduce((sum, m) => sum + m.content.length, 0) <= MAX_BODY_BYTES, `at most ${MAX_BODY_BYTES} characters of content in all`),
  stream: z.boolean(),
  includeUsage: z.boolean(),
  maxTokens: int.min(0).max(MAX_OUTPUT_TOKENS).nullable(),
  temperature: finite.min(TEMPERATURE.min).max(TEMPERATURE.max),
  topP: finite.gt(0).max(1),
  minP: finite.min(0).max(1),
  topK: int.min(TOP_K.min).max(TOP_K.max),
  presencePenalty: finite.min(PENALTY.min).max(PENALTY.max),
  frequencyPenalty: finite.min(PENALTY.min).max(PENALTY.max),
  repetitionPenalty: finite.min(REPETITION_PENALTY.min).max(REPETITION_PENALTY.max),
  seed: z.string().regex(/^[0-9]{1,19}$/).refine((s) => BigInt(s) < BigInt(SEED_EXCLUSIVE_MAX), "below 2^63").nullable(),
  stop: z.array(z.string().max(MAX_STOP_SEQUENCE_CHARS)).max(MAX_STOP_SEQUENCES),
  n: int.min(1).max(MAX_N),
  logprobs: z.boolean(),
  topLogprobs: int.min(0).max(MAX_TOP_LOGPROBS),
  logitBias: z.record(z.string().regex(/^[0-9]{1,6}$/), finite.min(LOGIT_BIAS.min).max(LOGIT_BIAS.max))
    .refine((bias) => Object.keys(bias).length <= LOGIT_BIAS.maxEntries, `at most ${LOGIT_BIAS.maxEntries} entries`),
  user: z.string().max(MAX_USER_ID_CHARS).nullable(),
  tools: z.array(z.object({ name: z.string(), description: z.string().nullable(), parameters: jsonObject, strict: z.boolean() })),
  toolChoice: z.union([z.enum(["none", "auto", "required"]), z.object({ name: z.string() })]),
  parallelToolCalls: z.boolean(),
  responseFormat: z.discriminatedUnion("type", [
    z.object({ type: z.literal("text") }),
    z.object({ type: z.literal("json_object") }),
    z.object({ type: z.literal("json_schema"), name: z.string(), schema: z.union([jsonObject, z.boolean()]), strict: z.boolean() }),
  ]),
  // Legacy completions: at most MAX_N prompts (prompts × n ≤ MAX_N, below), each no larger than a body;
  // a token id costs at least two characters of JSON ("0,").
  prompts: z.array(z.union([z.string().max(MAX_BODY_BYTES), z.array(int.min(0).max(VOCAB_SIZE - 1)).max(MAX_BODY_BYTES / 2)])).min(1).max(MAX_N).nullable(),
  echo: z.boolean(),
}).refine((r) => r.messages.length > 0 || r.prompts !== null, { message: "a job needs messages or prompts" })
  .refine((r) => r.prompts === null || r.prompts.length * r.n <= MAX_N, { message: `prompts × n must be at most ${MAX_N}`, path: ["prompts"] })
  .refine((r) => r.prompts === null || r.prompts.reduce((sum, p) => sum + p.length, 0) <= MAX_BODY_BYTES, { message: `at most ${MAX_BODY_BYTES} characters or token ids of prompts in all`, path: ["prompts"] });

const chatJobShape = z.object({
  protocol: z.number(),
  id: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/),
  created: int,
  enqueuedAt: finite,
  request: chatRequestShape,
  cacheSalt: z.string().regex(/^[0-9a-f]{16}$/).optional(),
});

/** Checks a job taken off the queue. Throws ProtocolVersionError or an Error naming the bad field. */
export function parseChatJob(data: unknown): ChatJob {
  const version = (data as { protocol?: unknown } | null)?.protocol;
  if (version !== PROTOCOL_VERSION) throw new ProtocolVersionError(version);
  const parsed = chatJobShape.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`malformed job: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  return parsed.data as unknown as ChatJob;
}

/** A completion id: what clients see, the BullMQ job id and the stream key suffix (`cmpl` for legacy completions). */
export function newCompletionId(prefix: "chatcmpl" | "cmpl" = "chatcmpl"): string {
  const bytes = new Uint8Array(18);
  crypto.getRandomValues(bytes);
  let s = "";
  for (const b of bytes) s += "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[b % 62];
  return `${prefix}-${s}`;
}
