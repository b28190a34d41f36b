import { describe, expect, it } from "vitest";
import { drawSeed, philox4x32, requestSeed, SEED_LIMIT, seedWords, uniform, uniformFromWords } from "../prng.ts";

describe("philox4x32", () => {
  // Random123's kat_vectors: counter (4 words), key (2 words) → output (4 words).
  const vectors: Array<[number[], number[], number[]]> = [
    [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
  ];
  it.each(vectors)("matches the published known answer for counter %j key %j", (ctr, key, expected) => {
    const out = new Uint32Array(4);
    philox4x32(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1], out);
    expect(Array.from(out)).toEqual(expected);
  });
});

describe("uniform", () => {
  it("is a pure function of (seed, choice, step)", () => {
    const a = uniform(42n, 3, 17);
    expect(uniform(42n, 3, 17)).toBe(a);
    expect(uniform(42n, 3, 18)).not.toBe(a);
    expect(uniform(42n, 4, 17)).not.toBe(a);
    expect(uniform(43n, 3, 17)).not.toBe(a);
    expect(uniform((1n << 32n) + 42n, 3, 17)).not.toBe(a);
  });

  it("agrees with the split-seed form the engine calls per token", () => {
    const seed = 0x7edcba9876543210n;
    const [lo, hi] = seedWords(seed);
    for (let step = 0; step < 100; step++) expect(uniformFromWords(lo, hi, 1, step)).toBe(uniform(seed, 1, step));
  });

  it("lies in [0, 1), uses 53 bits and is close to uniform", () => {
    const draws = 200_000;
    const bins = new Array(20).fill(0);
    let sum = 0;
    let fineBits = 0;
    let outside = 0;
    for (let step = 0; step < draws; step++) {
      const u = uniform(123456789n, 0, step);
      if (!(u >= 0 && u < 1)) outside++;
      bins[Math.floor(u * 20)]++;
      sum += u;
      // Bits below 2^-32 are set in a 53-bit draw almost always, never in a 32-bit one.
      if ((u * 2 ** 32) % 1 !== 0) fineBits++;
    }
    expect(outside).toBe(0);
    expect(Math.abs(sum / draws - 0.5)).toBeLessThan(0.005);
    for (const count of bins) expect(Math.abs(count / draws - 0.05)).toBeLessThan(0.003);
    expect(fineBits / draws).toBeGreaterThan(0.99);
  });

  it("draws independent streams for neighbouring choices (no correlation)", () => {
    const draws = 50_000;
    let sxy = 0, sx = 0, sy = 0, sxx = 0, syy = 0;
    for (let step = 0; step < draws; step++) {
      const x = uniform(7n, 0, step), y = uniform(7n, 1, step);
      sx += x; sy += y; sxy += x * y; sxx += x * x; syy += y * y;
    }
    const cov = sxy / draws - (sx / draws) * (sy / draws);
    const corr = cov / Math.sqrt((sxx / draws - (sx / draws) ** 2) * (syy / draws - (sy / draws) ** 2));
    expect(Math.abs(corr)).toBeLessThan(0.02);
  });

  it("rejects seeds outside 0 ≤ s < 2^63", () => {
    expect(() => uniform(-1n, 0, 0)).toThrow(RangeError);
    expect(() => uniform(SEED_LIMIT, 0, 0)).toThrow(RangeError);
    expect(uniform(SEED_LIMIT - 1n, 0, 0)).toBeGreaterThanOrEqual(0);
  });
});

describe("seeds", () => {
  it("draws seeds in range that differ from call to call", () => {
    const seen = new Set<bigint>();
    for (let i = 0; i < 100; i++) {
      const s = drawSeed();
      expect(s >= 0n && s < SEED_LIMIT).toBe(true);
      seen.add(s);
    }
    expect(seen.size).toBe(100);
  });

  it("reads the request's decimal seed exactly, beyond 2^53", () => {
    expect(requestSeed("9223372036854775807")).toBe(SEED_LIMIT - 1n);
    expect(requestSeed("0")).toBe(0n);
    expect(() => requestSeed("9223372036854775808")).toThrow(RangeError);
    expect(() => requestSeed("-5")).toThrow(RangeError);
    expect(typeof requestSeed(null)).toBe("bigint");
  });
});
