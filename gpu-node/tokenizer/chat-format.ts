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

export function renderChat(tokenizer: Phi4Tokenizer, messages: ReadonlyArray<ChatMessage>): RenderedPrompt {
  const ids: number[] = [];
  let text = "";
  const block = (role: string, content: string | null) => {
    ids.push(IM_START);
    tokenizer.encodeInto(role, ids);
    ids.push(IM_SEP);
    text += `<|im_start|>${role}<|im_sep|>`;
    if (content !== null) {
      tokenizer.encodeInto(content, ids);
      ids.push(IM_END);
      text += `${content}<|im_end|>`;
    }
  };
  for (const m of messages) block(m.role, m.content);
  block("assistant", null);
  return { text, ids };
}
