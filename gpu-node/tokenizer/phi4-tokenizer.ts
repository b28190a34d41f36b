/**
 * The exact Phi-4 tokenizer: cl100k_base BPE plus Phi-4's special tokens (docs/tokenizer.md).
 * Text from users is always encoded as ordinary text: a "<|im_end|>" typed in a message is BPE'd like
 * any other characters, never turned into a control token. Control tokens enter only by id.
 */
import { BytePairEncoder } from "./byte-pair-encoder.ts";
import { FIRST_SPECIAL_ID, SPECIAL_TOKENS } from "./special-tokens.ts";
import { VOCAB_SIZE } from "../../shared/limits.ts";

const EMPTY = new Uint8Array(0);

export class Phi4Tokenizer {
  private readonly bpe = new BytePairEncoder();
  private readonly specialById = new Map<number, string>();

  constructor() {
    for (const [text, id] of SPECIAL_TOKENS) this.specialById.set(id, text);
    if (this.bpe.size !== FIRST_SPECIAL_ID) {
      throw new Error(`cl100k_base ranks have ${this.bpe.size} entries, expected ${FIRST_SPECIAL_ID}`);
    }
  }

  readonly vocabSize = VOCAB_SIZE;

  /** Ordinary text → ids. Special-token strings inside it stay text. */
  encode(text: string): number[] {
    return this.bpe.encode(text);
  }

  /** Appends the ids of `text` to `out` (avoids concatenating arrays while rendering a chat). */
  encodeInto(text: string, out: number[], limit?: number): number[] {
    return this.bpe.encode(text, out, limit);
  }

  /** Id of a special token by its text, e.g. "<|im_end|>". */
  specialId(text: string): number {
    const id = SPECIAL_TOKENS.get(text);
    if (id === undefined) throw new Error(`not a Phi-4 special token: ${text}`);
    return id;
  }

  isSpecial(id: number): boolean {
    return id >= FIRST_SPECIAL_ID;
  }

  /** The UTF-8 bytes a token stands for in client-visible text (special tokens: none). */
  tokenBytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= VOCAB_SIZE) throw new RangeError(`token id out of range: ${id}`);
    return id < FIRST_SPECIAL_ID ? this.bpe.tokenBytes[id] : EMPTY;
  }

  /** Text of a special token ("<|im_end|>"), or undefined for ordinary ids. For operators' tools, never for clients. */
  specialText(id: number): string | undefined {
    return this.specialById.get(id);
  }

  /** Client-visible text of ids: special tokens dropped, invalid UTF-8 as U+FFFD. */
  decode(ids: ArrayLike<number>): string {
    let length = 0;
    for (let i = 0; i < ids.length; i++) length += this.tokenBytes(ids[i]).length;
    const bytes = new Uint8Array(length);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      const b = this.tokenBytes(ids[i]);
      bytes.set(b, at);
      at += b.length;
    }
    return new TextDecoder().decode(bytes);
  }
}

let shared: Phi4Tokenizer | undefined;
/** Building the rank tables takes ~100 ms; one per process (or worker thread) is enough. */
export function phi4Tokenizer(): Phi4Tokenizer {
  shared ??= new Phi4Tokenizer();
  return shared;
}
