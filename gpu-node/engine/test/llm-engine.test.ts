import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EngineHarness } from "./engine-harness.ts";
import { buildTinyModel } from "./tiny-model-fixture.ts";
import { phi4Tokenizer } from "../../tokenizer/phi4-tokenizer.ts";

let model: { modelDir: string; cleanup: () => Promise<void> };
let h: EngineHarness;
const tok = phi4Tokenizer();

beforeAll(async () => {
  model = await buildTinyModel(7);
  h = await EngineHarness.create(model.modelDir);
});
afterAll(async () => {
  await h?.release();
  await model?.cleanup();
});

/** Runs one request alone on a fresh engine state and returns its tokens. */
async function solo(id: string, body: Record<string, unknown>): Promise<number[][]> {
  h.submit(id, body);
  await h.runUntilIdle();
  return h.tokens(id);
}

describe("engine: one request", () => {
  it("streams start, deltas and one done whose usage counts the tokens", async () => {
    await solo("r1", { temperature: 0, max_tokens: 12 });
    const events = h.events.get("r1")!;
    expect(events[0]).toMatchObject({ type: "start", n: 1, node: "test-node" });
    const start = events[0] as { promptTokens: number };
    expect(start.promptTokens).toBe(tok.encode("user").length + tok.encode("Tell me a story.").length + tok.encode("assistant").length + 5);
    const done = events.at(-1)!;
    expect(done.type).toBe("done");
    const tokens = h.tokens("r1")[0];
    expect(done).toMatchObject({ finishReasons: ["length"], usage: { promptTokens: start.promptTokens, completionTokens: tokens.length } });
    expect(tokens.length).toBe(12);
    expect(h.text("r1")).toBe(tok.decode(tokens));
    expect(events.filter((e) => e.type === "done" || e.type === "error")).toHaveLength(1);
  });

  it("greedy decoding is deterministic and max_tokens 0 generates nothing", async () => {
    const a = await solo("g1", { temperature: 0, max_tokens: 16 });
    const b = await solo("g2", { temperature: 0, max_tokens: 16 });
    expect(a).toEqual(b);
    await solo("z", { max_tokens: 0 });
    expect(h.tokens("z")).toEqual([[]]);
    expect(h.last("z")).toMatchObject({ type: "done", finishReasons: ["length"], usage: { completionTokens: 0 } });
  });

  it("rejects a prompt that does not fit the context with context_length_exceeded", async () => {
    h.submit("long", { max_tokens: 16_384 });
    expect(h.last("long")).toMatchObject({ type: "error", status: 400, code: "context_length_exceeded", param: "messages" });
  });

  it("stops at a stop string split across tokens and never emits it", async () => {
    const free = await solo("s0", { temperature: 0, max_tokens: 40 });
    const fullText = tok.decode(free[0]);
    // A stop string spanning a token boundary in the middle of the greedy text.
    const cut = tok.decode(free[0].slice(0, 10)).length;
    const stop = fullText.slice(cut - 2, cut + 3);
    expect(stop.length).toBe(5);
    await solo("s1", { temperature: 0, max_tokens: 40, stop: [stop] });
    const text = h.text("s1");
    expect(text).toBe(fullText.slice(0, fullText.indexOf(stop)));
    expect(h.last("s1")).toMatchObject({ type: "done", finishReasons: ["stop"] });
  });

  it("reports logprobs of the chosen token and its top alternatives", async () => {
    await solo("lp", { temperature: 0, max_tokens: 4, logprobs: true, top_logprobs: 3 });
    const deltas = h.events.get("lp")!.filter((e) => e.type === "delta") as Array<{ tokens: number[]; logprobs?: Array<{ logprob: number; top_logprobs: Array<{ logprob: number }> }> }>;
    for (const d of deltas) {
      expect(d.logprobs).toHaveLength(1);
      const lp = d.logprobs![0];
      expect(lp.logprob).toBeLessThanOrEqual(0);
      expect(lp.top_logprobs).toHaveLength(3);
      // Greedy: the chosen token is the most likely one.
      expect(lp.logprob).toBeCloseTo(lp.top_logprobs[0].logprob, 6);
    }
  });
});

describe("engine: batching", () => {
  it("gives a seeded request the same tokens alone and among 31 others arriving at random moments", async () => {
    const body = { seed: 1234, temperature: 1, max_tokens: 24 };
    const alone = await solo("det-alone", body);
    let state = 42;
    const rand = () => (state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const others = Array.from({ length: 31 }, (_, i) => ({
      id: `noise-${i}`,
      at: Math.floor(rand() * 20),
      body: { temperature: 0.8, max_tokens: 5 + Math.floor(rand() * 30), messages: [{ role: "user", content: `Noise ${i} `.repeat(1 + Math.floor(rand() * 20)) }] },
    }));
    h.submit("det-busy", body);
    for (let step = 0; h.engine.hasWork || others.some((o) => o.at >= step); step++) {
      for (const o of others) if (o.at === step) h.submit(o.id, o.body);
      await h.engine.step();
    }
    expect(h.tokens("det-busy")).toEqual(alone);
    for (const o of others) expect(h.last(o.id)?.type).toBe("done");
  });

  it("resumes a request from already published tokens exactly as the uninterrupted run", async () => {
    const body = { seed: 99, temperature: 0.9, max_tokens: 20, stop: ["\n\n"] };
    const full = await solo("res-full", body);
    const k = Math.min(7, full[0].length - 1);
    h.submit("res-2", body, { tokens: [full[0].slice(0, k)], finishReasons: [null] });
    await h.runUntilIdle();
    expect([...full[0].slice(0, k), ...h.tokens("res-2")[0]]).toEqual(full[0]);
    const done = h.last("res-2") as { usage: { completionTokens: number } };
    expect(done.usage.completionTokens).toBe(full[0].length);
  });

  it("serves n choices that share the prompt's blocks and differ from each other", async () => {
    const toks = await solo("n3", { n: 3, seed: 5, temperature: 1, max_tokens: 10, messages: [{ role: "user", content: "word ".repeat(40) }] });
    expect(toks).toHaveLength(3);
    expect(new Set(toks.map((t) => t.join(","))).size).toBe(3);
    const done = h.last("n3") as { finishReasons: string[]; usage: { completionTokens: number } };
    expect(done.finishReasons).toEqual(["length", "length", "length"]);
    expect(done.usage.completionTokens).toBe(30);
    // Same seed, same choices.
    expect(await solo("n3b", { n: 3, seed: 5, temperature: 1, max_tokens: 10, messages: [{ role: "user", content: "word ".repeat(40) }] })).toEqual(toks);
  });

  it("reuses cached prefix blocks for a shared system prompt", async () => {
    const system = { role: "system", content: "You are a careful assistant. ".repeat(30) };
    const before = h.engine.stats().prefixCacheHitTokens;
    await solo("p1", { temperature: 0, max_tokens: 2, messages: [system, { role: "user", content: "one" }] });
    await solo("p2", { temperature: 0, max_tokens: 2, messages: [system, { role: "user", content: "two" }] });
    expect(h.engine.stats().prefixCacheHitTokens - before).toBeGreaterThanOrEqual(160);
  });

  it("abort frees every block and ends the request with a cancelled done", async () => {
    h.submit("ab", { max_tokens: 500 });
    for (let i = 0; i < 3; i++) await h.engine.step();
    expect(h.engine.stats().kvBlocksUsed).toBeGreaterThan(0);
    expect(h.engine.abort("ab")).toBe(true);
    expect(h.last("ab")).toMatchObject({ type: "done", cancelled: true });
    expect(h.engine.stats().kvBlocksUsed).toBe(0);
    expect(h.engine.hasWork).toBe(false);
  });
});

describe("engine: preemption under a small KV cache", () => {
  it("preempts the newest sequence instead of failing, and every request still gets its seeded tokens", async () => {
    const small = await EngineHarness.create(model.modelDir, { kvTokens: 256, blockSize: 16 });
    try {
      const bodies = Array.from({ length: 6 }, (_, i) => ({ seed: 100 + i, temperature: 1, max_tokens: 60, messages: [{ role: "user", content: `Request ${i}: ` + "go ".repeat(20) }] }));
      const expected: number[][][] = [];
      for (let i = 0; i < bodies.length; i++) {
        small.submit(`solo-${i}`, bodies[i]);
        await small.runUntilIdle();
        expected.push(small.tokens(`solo-${i}`));
      }
      for (let i = 0; i < bodies.length; i++) small.submit(`all-${i}`, bodies[i]);
      await small.runUntilIdle();
      const stats = small.engine.stats();
      expect(stats.preemptions).toBeGreaterThan(0);
      for (let i = 0; i < bodies.length; i++) expect(small.tokens(`all-${i}`)).toEqual(expected[i]);
      expect(stats.kvBlocksUsed).toBe(0);
      expect(stats.running + stats.waiting).toBe(0);
    } finally {
      await small.release();
    }
  });
});
