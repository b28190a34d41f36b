/** The OpenAI chat-completions wire shapes this service speaks (request side: see request-schema.ts). */

export type Role = "system" | "user" | "assistant" | "tool";
export type FinishReason = "stop" | "length" | "tool_calls";

/** A function call the model made (or, in a request's history, made earlier). */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; /** JSON text */ arguments: string };
}

/** One piece of a streamed tool call, as OpenAI streams them: id and name first, then argument fragments. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: "function";
  function: { name?: string; arguments: string };
}

export interface ChatMessage {
  role: Role;
  /** Text parts are joined; Phi-4 is text-only. */
  content: string;
  name?: string;
  tool_call_id?: string;
  /** An assistant turn's calls (rendered back into the prompt). */
  tool_calls?: ToolCall[];
}

/** A function the model may call: `parameters` is a JSON Schema (checked by json-schema-support.ts). */
export interface ToolFunction {
  name: string;
  description: string | null;
  parameters: Record<string, unknown>;
  strict: boolean;
}

/** `none`, `auto`, `required`, or one named function. */
export type ToolChoice = "none" | "auto" | "required" | { name: string };

export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; name: string; schema: Record<string, unknown> | boolean; strict: boolean };

export interface TopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface TokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

export interface ChoiceLogprobs {
  content: TokenLogprob[];
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Dollars, at the deployment's prices (pricing.ts). */
  estimated_cost: number;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    message: { role: "assistant"; content: string | null; refusal: null; tool_calls?: ToolCall[] };
    logprobs: ChoiceLogprobs | null;
    finish_reason: FinishReason;
  }>;
  usage: Usage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    delta: { role?: "assistant"; content?: string; tool_calls?: ToolCallDelta[] };
    logprobs: ChoiceLogprobs | null;
    finish_reason: FinishReason | null;
  }>;
  /** Present (null) on every chunk when `stream_options.include_usage`; filled on the final usage chunk. */
  usage?: Usage | null;
}

export interface ModelObject {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
}

export interface ModelList {
  object: "list";
  data: ModelObject[];
}

/** Legacy `/v1/completions` logprobs: parallel arrays, one entry per token. */
export interface TextCompletionLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

export interface TextCompletion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  system_fingerprint: string;
  /** finish_reason is null on stream chunks until the choice ends. */
  choices: Array<{ text: string; index: number; logprobs: TextCompletionLogprobs | null; finish_reason: FinishReason | null }>;
  usage?: Usage | null;
}
