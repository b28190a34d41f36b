import { describe, expect, it } from "vitest";
import { BlockManager } from "../block-manager.ts";
import { Sequence } from "../sequence.ts";
import { auditBlocks } from "./block-audit.ts";

const seq = (tokens: number[], choice = 0) => new Sequence("req", choice, tokens);
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

/** Runs a sequence's uncomputed tokens through the "model": marks them computed and commits. */
function compute(bm: BlockManager, s: Sequence): void {
  s.numComputedTokens = s.numTokens;
  bm.commit(s);
}

describe("BlockManager: allocation", () => {
  it("gives a prompt ceil(tokens / blockSize) blocks and counts them used", () => {
    const bm = new BlockManager(8, 4);
    const a = seq(range(0, 10));
    expect(bm.allocate(a)).toBe(true);
    expect(a.blockTable).toHaveLength(3);
    expect(a.numCachedTokens).toBe(0);
    expect(bm.stats()).toMatchObject({ total: 8, used: 3, free: 5 });
    auditBlocks(bm, [a]);
  });

  it("refuses, changing nothing, when the free blocks do not suffice", () => {
    const bm = new BlockManager(3, 4);
    const a = seq(range(0, 8));
    expect(bm.allocate(a)).toBe(true);
    const b = seq(range(100, 8));
    expect(bm.allocate(b)).toBe(false);
    expect(b.blockTable).toEqual([]);
    expect(bm.stats().free).toBe(1);
    auditBlocks(bm, [a, b]);
  });

  it("grows a decoding sequence one block at a time, only when its last block is full", () => {
    const bm = new BlockManager(3, 4);
    const a = seq(range(0, 4));
    bm.allocate(a);
    compute(bm, a);
    a.tokens.push(50); // 5th token: needs a second block
    expect(bm.ensureCapacity(a, a.numTokens)).toBe(true);
    expect(a.blockTable).toHaveLength(2);
    for (let t = 51; t <= 53; t++) {
      a.tokens.push(t);
      expect(bm.ensureCapacity(a, a.numTokens)).toBe(true);
      expect(a.blockTable).toHaveLength(2);
    }
    const other = seq(range(100, 4));
    bm.allocate(other); // takes the last free block
    a.tokens.push(54);
    expect(bm.ensureCapacity(a, a.numTokens)).toBe(false);
    expect(a.blockTable).toHaveLength(2);
    expect(bm.ensureCapacity(a, 8)).toBe(true); // still fits what it has
    auditBlocks(bm, [a, other]);
  });
});

describe("BlockManager: prefix cache", () => {
  it("a second sequence sharing the first one's computed prefix reuses its full blocks", () => {
    const bm = new BlockManager(16, 4);
    const a = seq(range(0, 12));
    bm.allocate(a);
    compute(bm, a);
    const b = seq([...range(0, 8), 900, 901, 902]);
    expect(bm.allocate(b)).toBe(true);
    expect(b.numCachedTokens).toBe(8);
    expect(b.numComputedTokens).toBe(8);
    expect(b.blockTable.slice(0, 2)).toEqual(a.blockTable.slice(0, 2));
    expect(b.blockTable[2]).not.toBe(a.blockTable[2]);
    expect(bm.stats()).toMatchObject({ used: 4, cachedHits: 8, queriedTokens: 23 });
    expect(bm.stats().hitRate).toBeCloseTo(8 / 23);
    auditBlocks(bm, [a, b]);
  });

  it("never covers the last token: an identical prompt still computes its last block", () => {
    const bm = new BlockManager(16, 4);
    const a = seq(range(0, 12));
    bm.allocate(a);
    compute(bm, a);
    const b = seq(range(0, 12));
    bm.allocate(b);
    expect(b.numCachedTokens).toBe(8);
    expect(b.blockTable[2]).not.toBe(a.blockTable[2]);
    auditBlocks(bm, [a, b]);
  });

  it("a hit needs the same whole prefix, not just the same block of tokens", () => {
    const bm = new BlockManager(16, 4);
    const a = seq(range(0, 12));
    bm.allocate(a);
    compute(bm, a);
    const b = seq([...range(50, 4), ...range(4, 8)]); // blocks 1 and 2 equal a's, block 0 differs
    bm.allocate(b);
    expect(b.numCachedTokens).toBe(0);
  });

  it("blocks are findable only once computed (committed), block by block", () => {
    const bm = new BlockManager(16, 4);
    const a = seq(range(0, 12));
    bm.allocate(a);
    const early = seq(range(0, 12));
    bm.allocate(early);
    expect(early.numCachedTokens).toBe(0);
    a.numComputedTokens = 6; // a prefill chunk: block 0 complete, block 1 half
    bm.commit(a);
    const b = seq(range(0, 12));
    bm.allocate(b);
    expect(b.numCachedTokens).toBe(4);
    auditBlocks(bm, [a, early, b]);
  });

  it("hits a freed sequence's blocks until they are reused", () => {
    const bm = new BlockManager(8, 4);
    const a = seq(range(0, 12));
    bm.allocate(a);
    compute(bm, a);
    const aBlocks = [...a.blockTable];
    bm.free(a);
    expect(bm.stats().used).toBe(0);
    const b = seq([...range(0, 8), 7, 7]);
    bm.allocate(b);
    expect(b.numCachedTokens).toBe(8);
    expect(b.blockTable.slice(0, 2)).toEqual(aBlocks.slice(0, 2));
    expect(bm.stats().used).toBe(3);
    auditBlocks(bm, [b]);
  });

  it("evicts the least recently freed blocks first, and a freed prefix outlives its tail", () => {
    const bm = new BlockManager(6, 2);
    const a = seq(range(0, 7)); // blocks: [0,1] [2,3] [4,5] full, [6] partial
    bm.allocate(a);
    compute(bm, a);
    const d = seq(range(100, 4)); // 2 blocks, freed after a's
    bm.allocate(d);
    compute(bm, d);
    const aBlocks = [...a.blockTable];
    const dBlocks = [...d.blockTable];
    bm.free(a);
    bm.free(d);
    // Queue: a's blocks tail first, then d's tail first. New work takes from the front.
    const filler = seq(range(500, 5));
    bm.allocate(filler);
    expect(filler.blockTable).toEqual([aBlocks[3], aBlocks[2], aBlocks[1]]);
    const againA = seq(range(0, 3));
    bm.allocate(againA);
    expect(againA.numCachedTokens).toBe(2); // a's first block survived
    expect(againA.blockTable[0]).toBe(aBlocks[0]);
    expect(againA.blockTable[1]).toBe(dBlocks[1]); // next to go: d's tail
    bm.free(againA);
    const againD = seq(range(100, 3));
    bm.allocate(againD);
    expect(againD.numCachedTokens).toBe(2);
    expect(againD.blockTable[0]).toBe(dBlocks[0]);
    const lateA = seq(range(0, 5));
    bm.free(filler);
    bm.allocate(lateA);
    expect(lateA.numCachedTokens).toBe(2); // a's second block was reused by filler: only the first hits
    auditBlocks(bm, [againD, lateA]);
  });

  it("a revived block is not also handed out as a fresh one", () => {
    const bm = new BlockManager(3, 2);
    const a = seq(range(0, 5));
    bm.allocate(a);
    compute(bm, a);
    bm.free(a);
    const b = seq(range(0, 5));
    expect(bm.allocate(b)).toBe(true);
    expect(new Set(b.blockTable).size).toBe(3);
    auditBlocks(bm, [b]);
  });
});

describe("BlockManager: invariants under random workloads", () => {
  it("refcounts match holders after any mix of allocate/compute/append/share/free, and everything returns free", () => {
    let state = 20261122;
    const rand = (n: number) => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return Math.floor((state / 4_294_967_296) * n);
    };
    const prefixes = [range(0, 24), range(1000, 10), range(2000, 3)];
    for (const blockSize of [1, 4, 16]) {
      const bm = new BlockManager(40, blockSize);
      const live: Sequence[] = [];
      let hits = 0;
      for (let op = 0; op < 3000; op++) {
        const choice = rand(10);
        if (choice < 3) {
          const prefix = prefixes[rand(prefixes.length)].slice(0, 1 + rand(24));
          const s = seq([...prefix, ...range(5000 + rand(3), rand(6))]);
          if (bm.allocate(s)) {
            hits += s.numCachedTokens;
            expect(s.numCachedTokens).toBeLessThan(s.numTokens);
            live.push(s);
          }
        } else if (choice < 5 && live.length > 0) {
          // a prefill chunk or a decode step
          const s = live[rand(live.length)];
          if (s.numComputedTokens < s.numTokens) {
            s.numComputedTokens = Math.min(s.numTokens, s.numComputedTokens + 1 + rand(8));
            bm.commit(s);
          } else {
            s.tokens.push(rand(50));
            if (bm.ensureCapacity(s, s.numTokens)) {
              s.numComputedTokens = s.numTokens;
              bm.commit(s);
            } else {
              s.tokens.pop();
            }
          }
        } else if (choice < 6 && live.length > 0) {
          // Another choice of the same request (n > 1): it finds the parent's committed blocks by prefix.
          const parent = live[rand(live.length)];
          const child = new Sequence("req", 1, parent.tokens);
          if (bm.allocate(child)) {
            // Committed blocks are found by content (another holder of the same prefix may supply them).
            hits += child.numCachedTokens;
            expect(child.numCachedTokens).toBeLessThan(child.numTokens);
            live.push(child);
          }
        } else if (live.length > 0) {
          const s = live.splice(rand(live.length), 1)[0];
          bm.free(s);
          expect(s.blockTable).toEqual([]);
        }
        auditBlocks(bm, live);
      }
      expect(hits).toBeGreaterThan(0);
      for (const s of live) bm.free(s);
      auditBlocks(bm, []);
      expect(bm.stats()).toMatchObject({ total: 40, used: 0, free: 40 });
    }
  });
});
