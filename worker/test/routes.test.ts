import { env, SELF } from "cloudflare:test";
import { afterAll, describe, expect, it } from "vitest";
import { isErrorBody } from "../../shared/errors.ts";
import { MAX_BODY_BYTES } from "../../shared/limits.ts";
import type { ModelList } from "../../shared/openai-types.ts";
import { sha256Hex, type ApiKeyRecord } from "../api-key.ts";
import { EXAMPLE_DEV_API_KEYS } from "../development-key.ts";
import { DEV_KEY, EdgeHarness, hello } from "./harness.ts";

const edge = new EdgeHarness("routes");
afterAll(() => edge.close());

const auth = { authorization: `Bearer ${DEV_KEY}` };

async function expectOpenAIError(response: Response, status: number, code?: string | null, param?: string | null) {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  const body = await response.json();
  expect(isErrorBody(body)).toBe(true);
  if (code !== undefined) expect((body as { error: { code: unknown } }).error.code).toBe(code);
  if (param !== undefined) expect((body as { error: { param: unknown } }).error.param).toBe(param);
}

describe("the entry point (SELF, wrangler.toml's main)", () => {
  it("serves the model list through the deployed fetch handler", async () => {
    const response = await SELF.fetch("http://edge.test/v1/models", { headers: auth });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ object: "list", data: [{ id: "microsoft/phi-4", object: "model", created: 1733961600, owned_by: "microsoft" }] });
  });
});

describe("models, health, CORS and unknown routes", () => {
  it("GET /v1/models/{id} answers the served model (its id has a slash) and 404 model_not_found otherwise", async () => {
    const ok = await edge.fetch("/v1/models/microsoft/phi-4", { headers: auth });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ id: "microsoft/phi-4", object: "model" });
    await expectOpenAIError(await edge.fetch("/v1/models/gpt-4o", { headers: auth }), 404, "model_not_found", "model");
  });

  it("GET /v1/models lists exactly the served model", async () => {
    const list = await (await edge.fetch("/v1/models", { headers: auth })).json() as ModelList;
    expect(list.data.map((m) => m.id)).toEqual(["microsoft/phi-4"]);
  });

  it("GET /health reports Redis reachable, and 503 with Retry-After when it is not", async () => {
    const ok = await edge.fetch("/health");
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ status: "ok", redis: "ok" });
    const down = await edge.fetch("/health", {}, { REDIS_URL: "redis://127.0.0.1:1" });
    expect(down.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
    await expectOpenAIError(down, 503, "queue_unavailable");
  });

  it("answers CORS preflight for the chat route", async () => {
    const response = await edge.fetch("/v1/chat/completions", {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    expect(response.headers.get("access-control-allow-methods")).toContain("POST");
    expect(response.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
  });

  it("answers anything else with 404 in OpenAI's shape", async () => {
    await expectOpenAIError(await edge.fetch("/v2/engines", { headers: auth }), 404, "unknown_url");
    await expectOpenAIError(await edge.fetch("/v1/chat/completions", { headers: auth }), 404, "unknown_url");
    await expectOpenAIError(await edge.fetch("/nothing-here", {}), 404, "unknown_url");
  });
});

describe("authentication", () => {
  it("rejects a missing, malformed or unknown key with 401 invalid_api_key", async () => {
    await expectOpenAIError(await edge.fetch("/v1/models"), 401, "invalid_api_key");
    await expectOpenAIError(await edge.fetch("/v1/models", { headers: { authorization: DEV_KEY } }), 401, "invalid_api_key");
    await expectOpenAIError(await edge.fetch("/v1/models", { headers: { authorization: "Bearer sk-test-dev-kez" } }), 401, "invalid_api_key");
    await expectOpenAIError(await edge.chat(hello(), "sk-nobody"), 401, "invalid_api_key");
  });

  it("accepts a key stored as its SHA-256 hash in KV, and refuses it once disabled", async () => {
    const key = "sk-phi4-kv-test-key-1";
    const record: ApiKeyRecord = { name: "kv-test", created: new Date().toISOString(), disabled: false };
    await env.API_KEYS.put(await sha256Hex(key), JSON.stringify(record));
    expect((await edge.fetch("/v1/models", { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    await env.API_KEYS.put(await sha256Hex(key), JSON.stringify({ ...record, disabled: true }));
    await expectOpenAIError(await edge.fetch("/v1/models", { headers: { authorization: `Bearer ${key}` } }), 401, "invalid_api_key");
  });

  it("does not accept the development key when DEV_API_KEY is unset", async () => {
    await expectOpenAIError(await edge.fetch("/v1/models", { headers: auth }, { DEV_API_KEY: undefined }), 401, "invalid_api_key");
  });

  it("accepts DEV_API_KEY only under local development, and never the example value", async () => {
    // Deployed (no LOCAL_DEVELOPMENT): a DEV_API_KEY that reached production opens nothing.
    await expectOpenAIError(await edge.fetch("/v1/models", { headers: auth }, { LOCAL_DEVELOPMENT: undefined }), 401, "invalid_api_key");
    await expectOpenAIError(await edge.fetch("/v1/models", { headers: auth }, { LOCAL_DEVELOPMENT: "1" }), 401, "invalid_api_key");
    for (const example of EXAMPLE_DEV_API_KEYS) {
      const response = await edge.fetch("/v1/models", { headers: { authorization: `Bearer ${example}` } }, { DEV_API_KEY: example });
      await expectOpenAIError(response, 401, "invalid_api_key");
    }
    expect((await edge.fetch("/v1/models", { headers: auth })).status).toBe(200);
  });

  it("does not fall back to a loopback Redis in production when REDIS_URL is missing", async () => {
    const local = await edge.fetch("/health", {}, { REDIS_URL: undefined, HEALTH_CACHE_MS: "0" });
    expect(local.status).toBe(200); // local development: the loopback default
    const deployed = await edge.fetch("/health", {}, { REDIS_URL: undefined, LOCAL_DEVELOPMENT: undefined, HEALTH_CACHE_MS: "0" });
    await expectOpenAIError(deployed, 503, "queue_unavailable");
  });
});

describe("request checks before anything is queued", () => {
  it("rejects a body that is not JSON by content type (415), by syntax (400 invalid_json), by size (413)", async () => {
    await expectOpenAIError(await edge.fetch("/v1/chat/completions", { method: "POST", headers: { ...auth, "content-type": "text/plain" }, body: JSON.stringify(hello()) }), 415);
    await expectOpenAIError(await edge.chat('{"model": "microsoft/phi-4", "messages": ['), 400, "invalid_json");
    const huge = JSON.stringify(hello({ messages: [{ role: "user", content: "x".repeat(MAX_BODY_BYTES) }] }));
    await expectOpenAIError(await edge.chat(huge), 413, "request_too_large");
    expect(await edge.waitingJobs()).toBe(0);
  });

  it("counts a body sent without Content-Length and answers 413 past the limit", async () => {
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > MAX_BODY_BYTES) return controller.close();
        sent += chunk.byteLength;
        controller.enqueue(chunk);
      },
    });
    const response = await edge.fetch("/v1/chat/completions", { method: "POST", headers: { ...auth, "content-type": "application/json" }, body, duplex: "half" } as RequestInit);
    await expectOpenAIError(response, 413, "request_too_large");
  });

  it("answers an unknown model with 404 model_not_found naming 'model'", async () => {
    await expectOpenAIError(await edge.chat(hello({ model: "gpt-4o" })), 404, "model_not_found", "model");
  });

  it("answers an out-of-range parameter with 400 naming it", async () => {
    await expectOpenAIError(await edge.chat(hello({ temperature: 2.5 })), 400, "invalid_value", "temperature");
    await expectOpenAIError(await edge.chat(hello({ top_k: 1000 })), 400, "invalid_value", "top_k");
    expect(await edge.waitingJobs()).toBe(0);
  });

  it("answers 503 with Retry-After when Redis is unreachable, after validating", async () => {
    const response = await edge.chat(hello(), DEV_KEY, "/v1/chat/completions", { REDIS_URL: "redis://127.0.0.1:1" });
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
    await expectOpenAIError(response, 503, "queue_unavailable");
  });
});
