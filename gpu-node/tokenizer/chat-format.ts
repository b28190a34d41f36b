/**
 * Phi-4's chat format (docs/chat-format.md): one block per message,
 *   <|im_start|>{role}<|im_sep|>{content}<|im_end|>
 * and the prompt ends with an open assistant header. Role and content are encoded as ordinary text
 * (so special-token strings in content stay text); the control tokens are inserted by id.
 */
import type { ChatMessage } from "../../shared/openai-types.ts";
import type { Phi4Tokenizer } from "./phi4-tokenizer.ts";
import { IM_END, IM_SEP, IM_START } from "./special-tokens.ts";

export interface RenderedPrompt {
  /** The prompt as text, control tokens spelled out (for operators; never sent to clients). */
  text: string;
  ids: number[];
}

/**
 * With `maxTokens`, rendering stops soon after the prompt passes it (the ids then hold more than
 * `maxTokens` but not the whole prompt, and `text` is cut too): refusing a prompt far past the context
 * window costs about one context window of tokenizing, not the whole text.
 */
export function renderChat(tokenizer: Phi4Tokenizer, messages: ReadonlyArray<ChatMessage>, maxTokens = Infinity): RenderedPrompt {
  const ids: number[] = [];
  let text = "";
  const block = (role: string, content: string | null) => {
    ids.push(IM_START);
    tokenizer.encodeInto(role, ids, maxTokens);
    ids.push(IM_SEP);
    text += `<|im_start|>${role}<|im_sep|>`;
    if (content !== null) {
      tokenizer.encodeInto(content, ids, maxTokens);
      ids.push(IM_END);
      text += `${content}<|im_end|>`;
    }
  };
  for (const m of messages) {
    if (ids.length > maxTokens) return { text, ids };
    block(m.role, m.content);
  }
  block("assistant", null);
  return { text, ids };
}
