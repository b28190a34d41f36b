import { env } from "cloudflare:test";
import { afterAll, describe, expect, it, vi } from "vitest";
import type { WorkerEnv } from "../env.ts";
import { EdgeHarness, hello } from "./harness.ts";

const edge = new EdgeHarness("outage");
afterAll(() => edge.close());

describe("a key store outage", () => {
  it("answers 503 with Retry-After, not 401, when KV cannot be read", async () => {
    // Workers KV failing its reads (an outage), in front of the real namespace.
    const failing = { get: () => Promise.reject(new Error("KV GET failed: 503 Service Unavailable")) };
    const response = await edge.fetch("/v1/models", { headers: { authorization: "Bearer sk-phi4-some-real-key" } }, { API_KEYS: failing as unknown as WorkerEnv["API_KEYS"] });
    expect(response.status).toBe(503);
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await response.json()).toMatchObject({ error: { type: "service_unavailable", code: "key_store_unavailable" } });
    // The namespace itself still answers 401 for a key it does not hold.
    expect((await edge.fetch("/v1/models", { headers: { authorization: "Bearer sk-phi4-some-real-key" } }, { API_KEYS: env.API_KEYS })).status).toBe(401);
  });
});

describe("a REDIS_URL that does not parse", () => {
  it("answers 503 and never echoes the URL or its password, in the response or the log", async () => {
    const logged: string[] = [];
    const spies = (["error", "warn", "log", "info"] as const).map((level) => vi.spyOn(console, level).mockImplementation((...args: unknown[]) => { logged.push(args.map(String).join(" ")); }));
    try {
      for (const url of ["redis://default:hunter2-secret@127.0.0.1:notaport", "redis://default:hunter2-secret@[::1", "http://default:hunter2-secret@127.0.0.1:6379",
        "redis-cluster://default:hunter2-secret@127.0.0.1:notaport", "rediss-cluster://default:hunter2-secret@",
        // Parses, but no cluster answers there (port 1): the connect failure is a 503 like the rest.
        "redis-cluster://default:hunter2-secret@127.0.0.1:1,127.0.0.1:2"]) {
        for (const response of [
          await edge.chat(hello(), undefined, undefined, { REDIS_URL: url }),
          await edge.fetch("/health", {}, { REDIS_URL: url, HEALTH_CACHE_MS: "0" }),
        ]) {
          const text = await response.text();
          expect(response.status).toBe(503);
          expect(text).not.toContain("hunter2");
          expect(JSON.parse(text)).toMatchObject({ error: { code: "queue_unavailable" } });
        }
      }
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(logged.join("\n")).not.toContain("hunter2");
    expect(logged.join("\n")).toContain("REDIS_URL");
  });
});
