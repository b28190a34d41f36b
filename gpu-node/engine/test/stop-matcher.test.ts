import { describe, expect, it } from "vitest";
import { StopMatcher } from "../stop-matcher.ts";

/** Streams `pieces` through a matcher the way the engine does: push each, flush at the end unless stopped. */
function stream(stops: string[], pieces: string[]): { text: string; stopped: boolean; emits: string[] } {
  const m = new StopMatcher(stops);
  const emits: string[] = [];
  for (const p of pieces) {
    const r = m.push(p);
    emits.push(r.emit);
    if (r.stopped) return { text: emits.join(""), stopped: true, emits };
  }
  emits.push(m.flush());
  return { text: emits.join(""), stopped: m.stopped, emits };
}

/** The specification: the full text cut before the earliest occurrence of any stop string. */
function reference(stops: string[], full: string): { text: string; stopped: boolean } {
  let cut = -1;
  for (const s of stops) {
    const at = full.indexOf(s);
    if (at !== -1 && (cut === -1 || at < cut)) cut = at;
  }
  return cut === -1 ? { text: full, stopped: false } : { text: full.slice(0, cut), stopped: true };
}

describe("StopMatcher", () => {
  it("stops on a stop string split over many pushes and never emits it", () => {
    const r = stream(["<END>"], ["Hello", " wor", "ld<", "E", "N", "D>", " more"]);
    expect(r).toMatchObject({ text: "Hello world", stopped: true });
    expect(r.emits).toEqual(["Hello", " wor", "ld", "", "", ""]);
  });

  it("holds back only what could begin a stop string, and releases it once ruled out", () => {
    const m = new StopMatcher(["###"]);
    expect(m.push("a#")).toEqual({ emit: "a", stopped: false });
    expect(m.push("#")).toEqual({ emit: "", stopped: false });
    expect(m.push("b")).toEqual({ emit: "##b", stopped: false });
    expect(m.flush()).toBe("");
  });

  it("finds an overlapping stop: 'aab' in 'aaab', one character at a time", () => {
    expect(stream(["aab"], ["a", "a", "a", "b"])).toMatchObject({ text: "a", stopped: true });
    expect(stream(["aab"], ["aaab"])).toMatchObject({ text: "a", stopped: true });
  });

  it("with several stops, the one starting earliest wins even if a later one completes first", () => {
    // "b" completes at index 1 while "abc" (from index 0) is still open; "abc" then completes.
    expect(stream(["abc", "b"], ["a", "b", "c"])).toMatchObject({ text: "", stopped: true });
    // Here "abc" fails, so "b" at index 2 decides.
    expect(stream(["abc", "b"], ["x", "a", "b", "d"])).toMatchObject({ text: "xa", stopped: true });
    expect(stream(["END", "STOP"], ["go ST", "OP and END"])).toMatchObject({ text: "go ", stopped: true });
  });

  it("flush releases held text at the end and cuts at a complete stop still held", () => {
    expect(stream(["</s>"], ["text </"])).toEqual({ text: "text </", stopped: false, emits: ["text ", "</"] });
    const m = new StopMatcher(["abc", "b"]);
    expect(m.push("ab")).toEqual({ emit: "", stopped: false });
    expect(m.flush()).toBe("a");
    expect(m.stopped).toBe(true);
  });

  it("handles unicode: CJK and emoji (surrogate pairs) across pushes", () => {
    expect(stream(["😀👍"], ["你好", "😀", "👍", "再见"])).toMatchObject({ text: "你好", stopped: true });
    expect(stream(["停止"], ["一二", "停", "三", "停", "止"])).toMatchObject({ text: "一二停三", stopped: true });
    const r = stream(["😀x"], ["a😀", "😀", "b"]);
    expect(r).toMatchObject({ text: "a😀😀b", stopped: false });
    for (const e of r.emits) expect(e).toBe(e.normalize()); // whole characters: no lone surrogates
    for (const e of r.emits) expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/.test(e)).toBe(false);
  });

  it("after stopping, further pushes emit nothing", () => {
    const m = new StopMatcher(["x"]);
    expect(m.push("axb")).toEqual({ emit: "a", stopped: true });
    expect(m.push("more")).toEqual({ emit: "", stopped: true });
    expect(m.flush()).toBe("");
  });

  it("equals the cut-at-earliest-stop specification on random texts split at random points", () => {
    // Seeded LCG so a failure reproduces.
    let state = 12345;
    const rand = (n: number) => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return (state >>> 8) % n;
    };
    const alphabet = ["a", "b", "c", "é", "😀"];
    const word = (len: number) => Array.from({ length: len }, () => alphabet[rand(alphabet.length)]).join("");
    for (let trial = 0; trial < 2000; trial++) {
      const stops = Array.from({ length: 1 + rand(4) }, () => word(1 + rand(4)));
      const full = word(rand(30));
      const pieces: string[] = [];
      const chars = Array.from(full);
      for (let i = 0; i < chars.length;) {
        const n = 1 + rand(4);
        pieces.push(chars.slice(i, i + n).join(""));
        i += n;
      }
      const got = stream(stops, pieces);
      expect({ text: got.text, stopped: got.stopped }, JSON.stringify({ stops, pieces })).toEqual(reference(stops, full));
    }
  });
});
