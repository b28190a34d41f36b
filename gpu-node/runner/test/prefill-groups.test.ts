import { describe, expect, it } from "vitest";
import { prefillGroups } from "../model-runner.ts";
import type { BatchRow } from "../step-runner.ts";

const row = (n: number): BatchRow => ({ tokens: new Array(n).fill(1), pastLen: 0, blockTable: [] });

describe("prefill grouping", () => {
  it("keeps rows of similar length in one run", () => {
    const rows = [row(100), row(96), row(110)];
    expect(prefillGroups(rows, [0, 1, 2])).toEqual([[2, 0, 1]]);
  });

  it("splits a long prompt from short ones instead of padding them to its length", () => {
    const rows = [row(20), row(413), row(18), row(25)];
    const groups = prefillGroups(rows, [0, 1, 2, 3]);
    expect(groups).toEqual([[1], [3, 0, 2]]);
    // Every row runs exactly once.
    expect(groups.flat().sort()).toEqual([0, 1, 2, 3]);
  });

  it("bounds the padded tokens of every run to 1.25× its real tokens", () => {
    let state = 3;
    const rand = () => (state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const rows = Array.from({ length: 40 }, () => row(2 + Math.floor(rand() ** 3 * 500)));
    const groups = prefillGroups(rows, rows.map((_, i) => i));
    expect(groups.flat().sort((a, b) => a - b)).toEqual(rows.map((_, i) => i));
    for (const g of groups) {
      const lens = g.map((r) => rows[r].tokens.length);
      expect(Math.max(...lens) * lens.length).toBeLessThanOrEqual(1.25 * lens.reduce((a, b) => a + b, 0) + 1e-9);
    }
  });
});
