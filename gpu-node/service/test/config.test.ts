/** Configuration from the environment: laptop defaults, and one clear line + exit 2 for a bad value. */
import { describe, expect, it } from "vitest";
import { ConfigError, parseNodeConfig } from "../config.ts";
import { spawnNode } from "../../../stack/node-process.ts";

describe("parseNodeConfig", () => {
  it("serves the tiny model against local Redis by default", () => {
    const c = parseNodeConfig({});
    expect(c).toMatchObject({
      redis: { kind: "single", url: "redis://127.0.0.1:6379" }, redisPrefix: "phi4", modelDir: null, ep: "cpu", servedModelId: "microsoft/phi-4",
      maxBatch: 32, kvBlockSize: 16, metricsPort: 9464, drainTimeoutMs: 30_000, lockDurationMs: 30_000, streamTtlSeconds: 600,
    });
  });

  it.each([
    ["MAX_BATCH", "lots", /MAX_BATCH must be an integer/],
    ["MAX_BATCH", "0", /MAX_BATCH must be an integer between 1/],
    ["KV_CACHE_TOKENS", "-5", /KV_CACHE_TOKENS/],
    ["KV_BLOCK_SIZE", "2.5", /KV_BLOCK_SIZE/],
    ["ORT_EP", "tpu", /ORT_EP must be one of 'cpu', 'cuda', 'webgpu'/],
    ["REDIS_URL", "http://x", /REDIS_URL must be redis:\/\//],
    ["REDIS_URL", "redis-cluster://10.0.0.1", /cluster seed node 1 is not host:port/],
    ["REDIS_PREFIX", "a b", /REDIS_PREFIX/],
    ["METRICS_PORT", "70000", /METRICS_PORT/],
    ["DRAIN_TIMEOUT_MS", "soon", /DRAIN_TIMEOUT_MS/],
  ])("rejects %s=%s naming the variable", (name, value, message) => {
    expect(() => parseNodeConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => parseNodeConfig({ [name]: value })).toThrow(message);
  });

  it("ORT_EP=webgpu takes KV blocks of 32 by default and refuses blocks under 32 or not a power of two", () => {
    expect(parseNodeConfig({ ORT_EP: "webgpu" })).toMatchObject({ ep: "webgpu", kvBlockSize: 32 });
    expect(parseNodeConfig({ ORT_EP: "webgpu", KV_BLOCK_SIZE: "64" }).kvBlockSize).toBe(64);
    for (const size of ["16", "48"]) expect(() => parseNodeConfig({ ORT_EP: "webgpu", KV_BLOCK_SIZE: size })).toThrow(/KV_BLOCK_SIZE must be a power of two ≥ 32 with ORT_EP=webgpu/);
  });

  it("reads a redis-cluster:// URL as the cluster's seed nodes with their credentials", () => {
    expect(parseNodeConfig({ REDIS_URL: "rediss-cluster://default:s%40cret@10.0.0.1:6379,[::1]:7000" }).redis).toEqual({
      kind: "cluster", nodes: [{ host: "10.0.0.1", port: 6379 }, { host: "::1", port: 7000 }], username: "default", password: "s@cret", tls: true,
    });
  });

  it.each(["redis://user:hunter2@[bad", "redis-cluster://user:hunter2@host", "http://user:hunter2@host"])("never echoes a REDIS_URL that does not parse (%s)", (url) => {
    expect(() => parseNodeConfig({ REDIS_URL: url })).toThrow(ConfigError);
    try {
      parseNodeConfig({ REDIS_URL: url });
    } catch (err) {
      expect((err as Error).message).not.toContain("hunter2");
    }
  });

  it("rejects a KV cache smaller than one block", () => {
    expect(() => parseNodeConfig({ KV_CACHE_TOKENS: "8", KV_BLOCK_SIZE: "16" })).toThrow(/at least one block/);
  });
});

describe("npm run gpu-node with a bad setting", () => {
  it.each([
    [{ MAX_BATCH: "many" }, /^gpu-node: MAX_BATCH must be an integer/],
    [{ MODEL_DIR: "/nonexistent/model" }, /^gpu-node: MODEL_DIR: .*missing model-config.json/],
  ] as Array<[Record<string, string>, RegExp]>)("prints one line and exits 2 (%o)", async (env, line) => {
    const child = spawnNode({ prefix: "phi4test-config", modelDir: env.MODEL_DIR ?? "/nonexistent", name: "config", env });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(2);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr.trim()).toMatch(line);
  });
});
