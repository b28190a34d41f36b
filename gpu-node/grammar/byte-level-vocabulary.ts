/**
 * Phi-4's vocabulary the way XGrammar reads a byte-level BPE vocabulary: each token's bytes spelled
 * with GPT-2's byte→character table (printable bytes stand for themselves, the rest map above U+0100),
 * so that tokens that are not valid UTF-8 on their own survive the trip into WebAssembly. Special
 * tokens are empty strings: XGrammar then never allows them inside a grammar, only as stop tokens.
 */
import type { Phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";

function byteToCharTable(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table = new Array<string>(256);
  for (const b of printable) table[b] = String.fromCodePoint(b);
  let next = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCodePoint(256 + next++);
  return table;
}

export function byteLevelVocabulary(tokenizer: Phi4Tokenizer): string[] {
  const table = byteToCharTable();
  const vocab = new Array<string>(tokenizer.vocabSize);
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    let s = "";
    if (!tokenizer.isSpecial(id)) for (const b of tokenizer.tokenBytes(id)) s += table[b];
    vocab[id] = s;
  }
  return vocab;
}
