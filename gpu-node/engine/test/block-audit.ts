/**
 * A white-box check of the block manager's bookkeeping for tests: reads its private state (the fields
 * below, kept out of the production class's API) and throws on the first broken invariant.
 */
import { mapKey, type BlockManager, type BlockSequence } from "../block-manager.ts";

/** The block manager's private state, as this audit reads it. */
interface BlockManagerState {
  numBlocks: number;
  blockSize: number;
  refCount: Int32Array;
  hashed: Uint8Array;
  hashHi: Uint32Array;
  hashLo: Uint32Array;
  blockTokens: Int32Array;
  byHash: Map<number, number>;
  prev: Int32Array;
  next: Int32Array;
  head: number;
  freeCount: number;
}

/** The end of the free queue's links. */
const FREE_END = -1;

/**
 * Checks every invariant against the sequences that hold blocks; throws on the first violation.
 * Reference counts equal the number of tables holding each block; a block is free iff its count is 0;
 * the free queue is consistent; only full blocks are hashed, and a hashed block holds its sequence's tokens.
 */
export function auditBlocks(bm: BlockManager, sequences: Iterable<BlockSequence>): void {
  const m = bm as unknown as BlockManagerState;
  const holders = new Int32Array(m.numBlocks);
  const bs = m.blockSize;
  for (const seq of sequences) {
    const seen = new Set<number>();
    seq.blockTable.forEach((id, i) => {
      if (!(id >= 0 && id < m.numBlocks)) throw new Error(`audit: block id ${id} out of range`);
      if (seen.has(id)) throw new Error(`audit: block ${id} appears twice in one table`);
      seen.add(id);
      holders[id]++;
      if (m.hashed[id]) {
        if ((i + 1) * bs > seq.numTokens) throw new Error(`audit: block ${id} is hashed but not full`);
        for (let j = 0; j < bs; j++) {
          if (m.blockTokens[id * bs + j] !== seq.tokens[i * bs + j]) throw new Error(`audit: hashed block ${id} holds other tokens`);
        }
      }
    });
    if (seq.blockTable.length * bs < Math.min(seq.numComputedTokens, seq.numTokens)) {
      throw new Error("audit: computed tokens beyond the sequence's blocks");
    }
  }
  let free = 0;
  for (let id = m.head, last = FREE_END; id !== FREE_END; last = id, id = m.next[id]) {
    if (m.prev[id] !== last) throw new Error(`audit: free queue broken at block ${id}`);
    if (m.refCount[id] !== 0) throw new Error(`audit: block ${id} is queued free with refcount ${m.refCount[id]}`);
    if (++free > m.numBlocks) throw new Error("audit: free queue has a cycle");
  }
  if (free !== m.freeCount) throw new Error(`audit: free queue holds ${free} blocks, count says ${m.freeCount}`);
  for (let id = 0; id < m.numBlocks; id++) {
    if (m.refCount[id] !== holders[id]) {
      throw new Error(`audit: block ${id} has refcount ${m.refCount[id]} but ${holders[id]} holders`);
    }
  }
  if (m.numBlocks - free !== holders.reduce((n, h) => n + (h > 0 ? 1 : 0), 0)) throw new Error("audit: used count mismatch");
  for (const [key, id] of m.byHash) {
    if (!m.hashed[id] || mapKey(m.hashHi[id], m.hashLo[id]) !== key) throw new Error(`audit: stale hash entry for block ${id}`);
  }
}
