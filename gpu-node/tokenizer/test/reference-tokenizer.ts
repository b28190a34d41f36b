/** js-tiktoken with Phi-4's special tokens: the independent reference our encoder is checked against. */
import { Tiktoken } from "js-tiktoken/lite";
import cl100k from "js-tiktoken/ranks/cl100k_base";
import { SPECIAL_TOKENS } from "../special-tokens.ts";

export const reference = new Tiktoken(cl100k, Object.fromEntries(SPECIAL_TOKENS));

/** Ordinary-text encoding by the reference (special strings treated as text). */
export function referenceEncode(text: string): number[] {
  return reference.encode(text, [], []);
}
