/** The OpenAI chat-completions wire shapes this service speaks (request side: see request-schema.ts). */

export type Role = "system" | "user" | "assistant" | "tool";
export type FinishReason = "stop" | "length";

export interface ChatMessage {
  role: Role;
  /** Text parts are joined; Phi-4 is text-only. */
  content: string;
  name?: string;
  tool_call_id?: string;
}

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
    message: { role: "assistant"; content: string; refusal: null };
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
    delta: { role?: "assistant"; content?: string };
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
