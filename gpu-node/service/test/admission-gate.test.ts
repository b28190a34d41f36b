/** When a node may take another job, from an engine stats snapshot (plain data from the engine). */
import { describe, expect, it } from "vitest";
import type { EngineStats } from "../../engine/llm-engine.ts";
import { roomIn } from "../admission-gate.ts";

const idle: EngineStats = {
  running: 0, waiting: 0, requests: 0, kvBlocksTotal: 64, kvBlocksUsed: 0, kvBlocksFree: 64, kvBytesUsed: 0,
  prefixCacheHitRate: 0, prefixCacheHitTokens: 0, preemptions: 0, steps: 0, forwardMs: 0, sessionRunMs: 0, stepMs: 0, samplerMs: 0, generatedTokens: 0,
};

describe("roomIn", () => {
  it("opens while everything taken is running and KV blocks cover the running sequences' growth", () => {
    expect(roomIn(idle)).toBe(true);
    expect(roomIn({ ...idle, running: 10, kvBlocksFree: 11 })).toBe(true);
  });

  it("closes while a sequence waits inside the engine (out of KV, or still prefilling what it took)", () => {
    expect(roomIn({ ...idle, running: 3, waiting: 1, kvBlocksFree: 40 })).toBe(false);
  });

  it("closes when free KV blocks would not cover one more block per running sequence plus a prompt", () => {
    expect(roomIn({ ...idle, running: 10, kvBlocksFree: 10 })).toBe(false);
  });
});
