/**
 * The paged KV cache's bookkeeping (no tensors: the runner owns the buffers, blocks are ids 0..numBlocks-1).
 *
 * After nano-vllm's block manager: each block has a reference count, and once every one of its
 * `blockSize` tokens has its K/V computed, a chained hash (its tokens + the hash of the block before it)
 * under which later sequences with the same prefix find it again. Free blocks sit in a least-recently-
 * freed queue; a freed block keeps its hash and tokens, so it can be revived by a prefix-cache hit until
 * it is handed out again (eviction takes the head of the queue: the block freed longest ago).
 *
 * Two rules keep the cache correct with chunked prefill and a runner that writes new K/V after each run:
 * - a block is hashed (becomes findable) only in `commit`, after the step that computed its last token;
 * - a cache hit never covers a sequence's last token: its logits are needed, so it is always computed,
 *   into a block of the sequence's own.
 */

/** What the block manager needs from a sequence (the engine's Sequence satisfies it). */
export interface BlockSequence {
  /** KV blocks holding the sequence's tokens, in order; owned by the block manager. */
  blockTable: number[];
  readonly tokens: ArrayLike<number>;
  readonly numTokens: number;
  /** Tokens found in the prefix cache at the last `allocate`. */
  numCachedTokens: number;
  /** Tokens whose K/V are in the cache; Scheduler.postprocess advances it, `allocate` starts it at the cached prefix. */
  numComputedTokens: number;
  /** Seeds the first block's chained hash ([hi, lo]): only sequences with equal salts share cached blocks. */
  readonly cacheSalt?: readonly [number, number];
}

export interface BlockStats {
  total: number;
  used: number;
  free: number;
  /** Tokens found in the prefix cache by `allocate`, since the start. */
  cachedHits: number;
  /** Tokens that `allocate` looked up, since the start. */
  queriedTokens: number;
  /** cachedHits / queriedTokens (0 before any query). */
  hitRate: number;
}

const NONE = -1;
/** The "hash of the block before the first one". */
const ROOT_HI = 0x243f6a88;
const ROOT_LO = 0x85a308d3;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * 64-bit chained hash of tokens[start..start+count) after the parent hash (two murmur3-style 32-bit
 * lanes with different constants, cross-mixed). Not cryptographic: a hit is confirmed on the block's
 * stored tokens and full 64-bit hash. Writes [hi, lo] into `out`.
 */
function chainHash(parentHi: number, parentLo: number, tokens: ArrayLike<number>, start: number, count: number, out: Uint32Array): void {
  let a = parentLo ^ 0x9e3779b9;
  let b = parentHi ^ 0x7f4a7c15;
  for (let i = start; i < start + count; i++) {
    const t = tokens[i] | 0;
    a ^= Math.imul(rotl(Math.imul(t, 0xcc9e2d51), 15), 0x1b873593);
    a = (Math.imul(rotl(a, 13), 5) + 0xe6546b64) | 0;
    b ^= Math.imul(rotl(Math.imul(t, 0x85ebca77), 17), 0xc2b2ae3d);
    b = (Math.imul(rotl(b, 11), 9) + 0x27d4eb2f) | 0;
  }
  a = fmix32(a ^ count);
  b = fmix32(b ^ count);
  a = (a + b) | 0;
  b = (b + a) | 0;
  out[0] = fmix32(b) >>> 0;
  out[1] = fmix32(a) >>> 0;
}

/** Key of a 64-bit hash in the lookup map: its top 53 bits (a number, no allocation); hits re-check all 64. */
export function mapKey(hi: number, lo: number): number {
  return hi * 2_097_152 + (lo >>> 11);
}

export class BlockManager {
  private readonly refCount: Int32Array;
  private readonly hashed: Uint8Array;
  private readonly hashHi: Uint32Array;
  private readonly hashLo: Uint32Array;
  /** The tokens each hashed block holds, to confirm a hit. */
  private readonly blockTokens: Int32Array;
  private readonly byHash = new Map<number, number>();
  /** Free blocks as a doubly linked queue: allocation takes the head, freeing appends at the tail. */
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = NONE;
  private tail = NONE;
  private freeCount = 0;
  private cachedHits = 0;
  private queriedTokens = 0;
  private readonly hash = new Uint32Array(2);
  private readonly hits: number[] = [];

  constructor(readonly numBlocks: number, readonly blockSize: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new RangeError(`numBlocks must be a positive integer, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`blockSize must be a positive integer, got ${blockSize}`);
    this.refCount = new Int32Array(numBlocks);
    this.hashed = new Uint8Array(numBlocks);
    this.hashHi = new Uint32Array(numBlocks);
    this.hashLo = new Uint32Array(numBlocks);
    this.blockTokens = new Int32Array(numBlocks * blockSize);
    this.prev = new Int32Array(numBlocks).fill(NONE);
    this.next = new Int32Array(numBlocks).fill(NONE);
    for (let id = 0; id < numBlocks; id++) this.pushFree(id);
  }

  get numFreeBlocks(): number {
    return this.freeCount;
  }

  /**
   * Gives a sequence without blocks blocks for all its tokens, reusing cached prefix blocks. Sets
   * `numCachedTokens` and `numComputedTokens` to the cached prefix (a whole number of blocks, always
   * short of the last token). Returns false, changing nothing, when there are not enough free blocks.
   */
  allocate(seq: BlockSequence): boolean {
    if (seq.blockTable.length > 0) throw new Error("allocate: the sequence already holds blocks");
    if (this.freeCount < this.freeBlocksNeeded(seq)) return false;
    const table = seq.blockTable;
    for (const id of this.hits) {
      if (this.refCount[id] === 0) this.unlinkFree(id);
      this.refCount[id]++;
      table.push(id);
    }
    const blocks = Math.ceil(seq.numTokens / this.blockSize);
    while (table.length < blocks) table.push(this.takeFree());
    const cached = this.hits.length * this.blockSize;
    seq.numCachedTokens = cached;
    seq.numComputedTokens = cached;
    this.cachedHits += cached;
    this.queriedTokens += seq.numTokens;
    return true;
  }

  /** Grows the sequence's blocks to hold `numTokens` tokens; false (nothing changed) if there are not enough free blocks. */
  ensureCapacity(seq: BlockSequence, numTokens: number): boolean {
    const need = Math.ceil(numTokens / this.blockSize) - seq.blockTable.length;
    if (need <= 0) return true;
    if (this.freeCount < need) return false;
    for (let i = 0; i < need; i++) seq.blockTable.push(this.takeFree());
    return true;
  }

  /**
   * After a step: every block whose tokens now all have their K/V computed (`numComputedTokens`) gets
   * its chained hash and becomes findable by later sequences sharing the prefix.
   */
  commit(seq: BlockSequence): void {
    const bs = this.blockSize;
    const table = seq.blockTable;
    const full = Math.min(Math.floor(Math.min(seq.numComputedTokens, seq.numTokens) / bs), table.length);
    let first = full;
    while (first > 0 && this.hashed[table[first - 1]] === 0) first--;
    if (first === full) return;
    let hi = first === 0 ? ROOT_HI ^ (seq.cacheSalt?.[0] ?? 0) : this.hashHi[table[first - 1]];
    let lo = first === 0 ? ROOT_LO ^ (seq.cacheSalt?.[1] ?? 0) : this.hashLo[table[first - 1]];
    for (let i = first; i < full; i++) {
      const id = table[i];
      chainHash(hi, lo, seq.tokens, i * bs, bs, this.hash);
      hi = this.hash[0];
      lo = this.hash[1];
      this.hashed[id] = 1;
      this.hashHi[id] = hi;
      this.hashLo[id] = lo;
      for (let j = 0; j < bs; j++) this.blockTokens[id * bs + j] = seq.tokens[i * bs + j];
      this.byHash.set(mapKey(hi, lo), id);
    }
  }

  /** Releases the sequence's blocks (finished, aborted or preempted); its hashed blocks stay findable until reused. */
  free(seq: BlockSequence): void {
    const table = seq.blockTable;
    // Last blocks first, so a prefix outlives its tail in the least-recently-freed queue.
    for (let i = table.length - 1; i >= 0; i--) {
      const id = table[i];
      if (this.refCount[id] <= 0) throw new Error(`free: block ${id} is not in use`);
      if (--this.refCount[id] === 0) this.pushFree(id);
    }
    table.length = 0;
    seq.numCachedTokens = 0;
    seq.numComputedTokens = 0;
  }

  stats(): BlockStats {
    return {
      total: this.numBlocks,
      used: this.numBlocks - this.freeCount,
      free: this.freeCount,
      cachedHits: this.cachedHits,
      queriedTokens: this.queriedTokens,
      hitRate: this.queriedTokens === 0 ? 0 : this.cachedHits / this.queriedTokens,
    };
  }

  /** Prefix-cache hits for the sequence into `this.hits`; returns the free blocks allocate would consume. */
  private freeBlocksNeeded(seq: BlockSequence): number {
    const bs = this.blockSize;
    const hits = this.hits;
    hits.length = 0;
    // Blocks entirely before the last token may come from the cache.
    const eligible = Math.floor((seq.numTokens - 1) / bs);
    let hi = ROOT_HI ^ (seq.cacheSalt?.[0] ?? 0);
    let lo = ROOT_LO ^ (seq.cacheSalt?.[1] ?? 0);
    let revived = 0;
    for (let i = 0; i < eligible; i++) {
      chainHash(hi, lo, seq.tokens, i * bs, bs, this.hash);
      hi = this.hash[0];
      lo = this.hash[1];
      const id = this.byHash.get(mapKey(hi, lo));
      if (id === undefined || !this.holds(id, hi, lo, seq.tokens, i * bs)) break;
      hits.push(id);
      if (this.refCount[id] === 0) revived++;
    }
    return Math.ceil(seq.numTokens / bs) - hits.length + revived;
  }

  private holds(id: number, hi: number, lo: number, tokens: ArrayLike<number>, start: number): boolean {
    if (!this.hashed[id] || this.hashHi[id] !== hi || this.hashLo[id] !== lo) return false;
    const bs = this.blockSize;
    for (let j = 0; j < bs; j++) if (this.blockTokens[id * bs + j] !== tokens[start + j]) return false;
    return true;
  }

  /** Hands out the least recently freed block, forgetting what it cached. */
  private takeFree(): number {
    const id = this.head;
    if (id === NONE) throw new Error("no free KV block");
    this.unlinkFree(id);
    if (this.hashed[id]) {
      const key = mapKey(this.hashHi[id], this.hashLo[id]);
      if (this.byHash.get(key) === id) this.byHash.delete(key);
      this.hashed[id] = 0;
    }
    this.refCount[id] = 1;
    return id;
  }

  private pushFree(id: number): void {
    this.prev[id] = this.tail;
    this.next[id] = NONE;
    if (this.tail === NONE) this.head = id;
    else this.next[this.tail] = id;
    this.tail = id;
    this.freeCount++;
  }

  private unlinkFree(id: number): void {
    const p = this.prev[id];
    const n = this.next[id];
    if (p === NONE) this.head = n;
    else this.next[p] = n;
    if (n === NONE) this.tail = p;
    else this.prev[n] = p;
    this.prev[id] = NONE;
    this.next[id] = NONE;
    this.freeCount--;
  }
}
