/**
 * cl100k_base byte-level BPE, driven by the ranks that ship in js-tiktoken. Our own encoder (not
 * js-tiktoken's) so we own the hot path and the token→bytes table, and so tests can compare against
 * js-tiktoken as an independent reference. Merging uses a heap, so a megabyte-long piece costs
 * O(n log n), not O(n²).
 */
import cl100k from "js-tiktoken/ranks/cl100k_base";

/** Bytes as a "binary" string (one char per byte): a cheap Map key. */
type ByteString = string;

export class BytePairEncoder {
  private readonly ranks = new Map<ByteString, number>();
  /** rank → bytes. */
  readonly tokenBytes: Uint8Array[] = [];
  readonly pattern: RegExp;
  private readonly cache = new Map<ByteString, number[]>();

  constructor() {
    this.pattern = new RegExp(cl100k.pat_str, "gu");
    for (const line of cl100k.bpe_ranks.split("\n")) {
      if (!line) continue;
      const fields = line.split(" ");
      const offset = Number.parseInt(fields[1], 10);
      for (let i = 2; i < fields.length; i++) {
        const bytes = Uint8Array.from(atob(fields[i]), (c) => c.charCodeAt(0));
        const rank = offset + i - 2;
        this.ranks.set(latin1(bytes), rank);
        this.tokenBytes[rank] = bytes;
      }
    }
  }

  get size(): number {
    return this.tokenBytes.length;
  }

  /**
   * Encodes text with no special tokens: every character is ordinary text. With `limit`, stops once
   * `out` holds more than `limit` ids: a caller that only needs to know "too long" never pays for
   * tokenizing the rest of a huge text.
   */
  encode(text: string, out: number[] = [], limit = Infinity): number[] {
    const utf8 = new TextEncoder();
    for (const match of text.matchAll(this.pattern)) {
      if (out.length > limit) break;
      const piece = latin1(utf8.encode(match[0]));
      const whole = this.ranks.get(piece);
      if (whole !== undefined) {
        out.push(whole);
        continue;
      }
      let ids = this.cache.get(piece);
      if (ids === undefined) {
        ids = this.mergePiece(piece);
        if (piece.length <= 256) {
          if (this.cache.size > 50_000) this.cache.clear();
          this.cache.set(piece, ids);
        }
      }
      for (const id of ids) out.push(id);
    }
    return out;
  }

  /** BPE over one pre-tokenized piece: repeatedly merge the adjacent pair of lowest rank. */
  private mergePiece(piece: ByteString): number[] {
    const n = piece.length;
    // Doubly linked list of parts by start offset; a part runs to the start of the next.
    const next = new Int32Array(n + 1);
    const prev = new Int32Array(n + 1);
    const alive = new Uint8Array(n + 1);
    for (let i = 0; i <= n; i++) {
      next[i] = i + 1;
      prev[i] = i - 1;
      alive[i] = 1;
    }
    const heap = new MinHeap();
    const pairRank = (start: number): number => {
      const mid = next[start];
      if (mid >= n) return -1;
      return this.ranks.get(piece.slice(start, next[mid])) ?? -1;
    };
    for (let i = 0; i + 1 < n; i++) {
      const r = pairRank(i);
      if (r >= 0) heap.push(r, i);
    }
    while (heap.size > 0) {
      const { rank, pos } = heap.pop();
      if (!alive[pos] || pairRank(pos) !== rank) continue; // stale entry
      // Merge pos with its successor.
      const mid = next[pos];
      alive[mid] = 0;
      next[pos] = next[mid];
      prev[next[mid]] = pos;
      const r = pairRank(pos);
      if (r >= 0) heap.push(r, pos);
      const before = prev[pos];
      if (before >= 0) {
        const rb = pairRank(before);
        if (rb >= 0) heap.push(rb, before);
      }
    }
    const ids: number[] = [];
    for (let i = 0; i < n; i = next[i]) {
      const rank = this.ranks.get(piece.slice(i, next[i]));
      if (rank === undefined) throw new Error("BPE reached a part with no rank (corrupt ranks)");
      ids.push(rank);
    }
    return ids;
  }
}

function latin1(bytes: Uint8Array): ByteString {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

/** Min-heap of (rank, position); ties broken by position so merges go left to right as in tiktoken. */
class MinHeap {
  private ranks: number[] = [];
  private positions: number[] = [];

  get size(): number {
    return this.ranks.length;
  }

  push(rank: number, pos: number): void {
    this.ranks.push(rank);
    this.positions.push(pos);
    let i = this.ranks.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): { rank: number; pos: number } {
    const top = { rank: this.ranks[0], pos: this.positions[0] };
    const lastRank = this.ranks.pop()!;
    const lastPos = this.positions.pop()!;
    if (this.ranks.length > 0) {
      this.ranks[0] = lastRank;
      this.positions[0] = lastPos;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.ranks.length && this.less(l, m)) m = l;
        if (r < this.ranks.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    return this.ranks[a] < this.ranks[b] || (this.ranks[a] === this.ranks[b] && this.positions[a] < this.positions[b]);
  }

  private swap(a: number, b: number): void {
    [this.ranks[a], this.ranks[b]] = [this.ranks[b], this.ranks[a]];
    [this.positions[a], this.positions[b]] = [this.positions[b], this.positions[a]];
  }
}
