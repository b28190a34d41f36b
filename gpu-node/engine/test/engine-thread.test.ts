import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../engine.ts";
import { request } from "./engine-harness.ts";
import { buildTinyModel } from "./tiny-model-fixture.ts";
import type { StreamEvent } from "../../../shared/protocol.ts";
import { isXGrammarLoaded } from "../../grammar/xgrammar-module.ts";

let model: { modelDir: string; cleanup: () => Promise<void> };
let engine: Engine;

beforeAll(async () => {
  model = await buildTinyModel(3);
  engine = await Engine.start({ modelDir: model.modelDir, kvCacheTokens: 4096, intraOpThreads: 1, nodeName: "thread-test" });
});
afterAll(async () => {
  await engine?.close();
  await model?.cleanup();
});

async function collect(events: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

describe("engine on its worker thread", () => {
  it("compiles and applies grammars on the engine thread (XGrammar never loads on the host thread)", async () => {
    const schema = { type: "object", properties: { ok: { type: "boolean" }, n: { type: "integer", minimum: 0, maximum: 9 } }, required: ["ok", "n"], additionalProperties: false };
    const events = await collect(engine.submit({
      id: "grammar-thread",
      request: request({ seed: 1, max_tokens: 100, response_format: { type: "json_schema", json_schema: { name: "x", schema, strict: true } } }),
    }));
    let text = "";
    for (const e of events) if (e.type === "delta") text += e.text;
    expect(JSON.parse(text)).toMatchObject({ ok: expect.any(Boolean), n: expect.any(Number) });
    expect(events.at(-1)).toMatchObject({ type: "done", finishReasons: ["stop"] });
    expect(isXGrammarLoaded()).toBe(false);
  });

  it("serves concurrent requests while the host thread stays free", async () => {
    const hostBefore = performance.eventLoopUtilization();
    const statsBefore = await engine.stats();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => collect(engine.submit({ id: `t-${i}`, request: request({ seed: i, max_tokens: 20 }) }))),
    );
    const host = performance.eventLoopUtilization(hostBefore);
    for (const events of results) {
      expect(events[0]).toMatchObject({ type: "start", node: "thread-test" });
      expect(events.at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 20 } });
    }
    const stats = await engine.stats();
    // The forward passes and the sampling ran on the engine thread: the host's event loop sat idle for
    // most of the time they took (running the step loop itself, it would be busy nearly all of it).
    const engineBusyMs = stats.stepMs - statsBefore.stepMs;
    expect(engineBusyMs).toBeGreaterThan(0);
    expect(host.active).toBeLessThan(engineBusyMs / 2);
    expect(stats.kvBlocksUsed).toBe(0);
    expect(stats.generatedTokens).toBeGreaterThanOrEqual(160);
  });

  it("aborts a running request: done with cancelled, blocks freed", async () => {
    const events: StreamEvent[] = [];
    const stream = engine.submit({ id: "abort-me", request: request({ max_tokens: 2000 }) });
    for await (const e of stream) {
      events.push(e);
      if (e.type === "delta" && events.length === 4) engine.abort("abort-me");
    }
    expect(events.at(-1)).toMatchObject({ type: "done", cancelled: true });
    expect((await engine.stats()).kvBlocksUsed).toBe(0);
  });

  it("survives aborts and submits that arrive while a step is between its runs", async () => {
    // Staggered prompts of different lengths make steps of several runs (prefill groups beside
    // decodes); aborts land at arbitrary moments, many of them inside a step.
    const streams: Array<Promise<StreamEvent[]>> = [];
    // Long decoders keep a decode group in every step; the new prompts' prefill runs after it.
    for (let i = 0; i < 12; i++) streams.push(collect(engine.submit({ id: `decoder-${i}`, request: request({ seed: 100 + i, max_tokens: 150 }) })));
    for (let i = 0; i < 60; i++) {
      const id = `mid-step-${i}`;
      const content = "tell me more ".repeat(1 + ((i * 7) % 40));
      streams.push(collect(engine.submit({ id, request: request({ seed: i, max_tokens: 40, messages: [{ role: "user", content }] }) })));
      setTimeout(() => engine.abort(id), (i * 7) % 23);
      await new Promise((r) => setTimeout(r, 1 + (i % 4)));
    }
    for (const events of await Promise.all(streams)) expect(events.at(-1)).toMatchObject({ type: "done" });
    const after = await collect(engine.submit({ id: "after-aborts", request: request({ max_tokens: 4 }) }));
    expect(after.at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 4 } });
    expect((await engine.stats()).kvBlocksUsed).toBe(0);
  });

  it("answers a context overflow with an error event", async () => {
    const events = await collect(engine.submit({ id: "too-long", request: request({ max_tokens: 16_384 }) }));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "error", code: "context_length_exceeded" });
  });

  it("fails to start with a clear message when the model is missing", async () => {
    await expect(Engine.start({ modelDir: "/nonexistent/model", kvCacheTokens: 256 })).rejects.toThrow(/engine failed to start: .*nonexistent/);
  });
});

describe("engine thread under abort storms", () => {
  it("survives aborts that land while a step is running", async () => {
    for (let round = 0; round < 20; round++) {
      const a = engine.submit({ id: `storm-a-${round}`, request: request({ max_tokens: 50 }) });
      engine.abort(`storm-a-${round}`);
      await new Promise((r) => setTimeout(r, 2));
      const b = engine.submit({ id: `storm-b-${round}`, request: request({ max_tokens: 50 }) });
      engine.abort(`storm-b-${round}`);
      for (const events of await Promise.all([collect(a), collect(b)])) expect(events.at(-1)?.type).toBe("done");
    }
    const ok = await collect(engine.submit({ id: "after-storm", request: request({ max_tokens: 5 }) }));
    expect(ok.at(-1)).toMatchObject({ type: "done", usage: { completionTokens: 5 } });
    expect((await engine.stats()).kvBlocksUsed).toBe(0);
  });
});
