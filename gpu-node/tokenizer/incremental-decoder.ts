/**
 * Streaming detokenizer: feed ids one at a time, get only whole characters back. A token that ends in
 * the middle of a multi-byte UTF-8 character is held until the character completes; special tokens
 * contribute nothing. Concatenating every push() and the final flush() equals Phi4Tokenizer.decode of
 * all ids, because the WHATWG streaming decoder is defined to produce exactly that.
 */
import type { Phi4Tokenizer } from "./phi4-tokenizer.ts";

export class IncrementalDecoder {
  private readonly utf8 = new TextDecoder("utf-8");

  constructor(private readonly tokenizer: Phi4Tokenizer) {}

  /** Text completed by this token ("" while a character is still incomplete). */
  push(id: number): string {
    const bytes = this.tokenizer.tokenBytes(id);
    if (bytes.length === 0) return "";
    return this.utf8.decode(bytes, { stream: true });
  }

  /** Ends the stream: a dangling partial character becomes U+FFFD. */
  flush(): string {
    return this.utf8.decode();
  }
}
