import { afterAll, describe, expect, it } from "vitest";
import { isErrorBody } from "../../shared/errors.ts";
import { seededUniform } from "../../shared/seeded-uniform.ts";
import { EdgeHarness, hello } from "./harness.ts";

const edge = new EdgeHarness("fuzz");
afterAll(() => edge.close());

/** Values outside every accepted range or type of each parameter (docs/api.md). */
const badValues: Record<string, unknown[]> = {
  temperature: [-0.01, 2.01, 100, "1", true, [], {}],
  top_p: [0, -0.5, 1.0001, "0.9", false],
  min_p: [-0.1, 1.1, "0"],
  top_k: [-1, 1000, 0.5, "40"],
  presence_penalty: [-2.1, 2.1, "0"],
  frequency_penalty: [-3, 3, []],
  repetition_penalty: [0, 0.001, 5.01, -1],
  max_tokens: [-1, 16385, 1.5, "10", 1e9],
  max_completion_tokens: [-5, 20000, 0.1],
  seed: [-1, 2 ** 63, 1.5, "7", 1e300],
  n: [0, 17, -1, 1.2, "2"],
  logprobs: ["yes", 1],
  top_logprobs: [-1, 21, 2.5],
  stop: [["a", "b", "c", "d", "e"], [""], "", 5, [1], ["x".repeat(513)]],
  logit_bias: [{ "-1": 1 }, { "100352": 1 }, { "abc": 1 }, { "5": 101 }, { "5": -101 }, { "5": "1" }, [1, 2], "x"],
  user: [5, "u".repeat(257), {}],
  tool_choice: ["required", { type: "function" }, 3],
  stream: ["true", 1],
  stream_options: [5, "x"],
  tools: [5, [{ type: "retrieval" }]],
};

const badMessages: unknown[] = [
  [], "hello", null, 5, [null], ["hi"],
  [{ role: "assistant", content: "only me" }],
  [{ role: "system", content: "a" }, { role: "system", content: "b" }, { role: "user", content: "c" }],
  [{ role: "user", content: "q" }, { role: "assistant", content: "a" }],
  [{ role: "wizard", content: "x" }],
  [{ content: "no role" }],
  [{ role: "user", content: 42 }],
  [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x" } }] }],
  [{ role: "user", content: [{ type: "text" }] }],
  [{ role: "user", content: "x", name: 7 }],
  [{ role: "user", content: "x", name: "n".repeat(300) }],
  [{ role: "user", content: "x", tool_call_id: 3 }],
  [{ role: "system", content: "only system" }],
  Array.from({ length: 2049 }, () => ({ role: "user", content: "x" })),
];

const rawBodies: string[] = [
  "", " ", "null", "true", "42", '"a string"', "[]", "[1,2]", "{", '{"model":', "{'model': 'x'}", "\u0000\u0001",
  '{"model":"microsoft/phi-4","messages":[{"role":"user","content":"hi"}],}', "NaN", '{"model":"microsoft/phi-4","messages":"',
  '{"model":"microsoft/phi-4","messages":[{"role":"user","content":"hi"}],"temperature":1e400}',
];

function cases(): Array<{ what: string; body: string }> {
  const out: Array<{ what: string; body: string }> = [];
  for (const [param, values] of Object.entries(badValues)) {
    for (const value of values) out.push({ what: `${param}=${JSON.stringify(value)?.slice(0, 40)}`, body: JSON.stringify(hello({ [param]: value })) });
  }
  for (const messages of badMessages) out.push({ what: `messages=${JSON.stringify(messages).slice(0, 60)}`, body: JSON.stringify(hello({ messages })) });
  for (const raw of rawBodies) out.push({ what: `raw ${JSON.stringify(raw).slice(0, 40)}`, body: raw });
  out.push({ what: "no model", body: JSON.stringify({ messages: [{ role: "user", content: "x" }] }) });
  out.push({ what: "no messages", body: JSON.stringify({ model: "microsoft/phi-4" }) });
  out.push({ what: "model not served", body: JSON.stringify(hello({ model: "microsoft/phi-3" })) });
  out.push({ what: "empty model", body: JSON.stringify(hello({ model: "" })) });
  out.push({ what: "stream_options without stream", body: JSON.stringify(hello({ stream_options: { include_usage: true } })) });
  out.push({ what: "top_logprobs without logprobs", body: JSON.stringify(hello({ top_logprobs: 3 })) });
  // Random combinations: one or more bad parameters on an otherwise valid request.
  const random = seededUniform(20261122);
  const params = Object.keys(badValues);
  while (out.length < 260) {
    const body: Record<string, unknown> = hello();
    const k = 1 + Math.floor(random() * 3);
    for (let i = 0; i < k; i++) {
      const param = params[Math.floor(random() * params.length)];
      body[param] = badValues[param][Math.floor(random() * badValues[param].length)];
    }
    if (random() < 0.3) body.messages = badMessages[Math.floor(random() * badMessages.length)];
    out.push({ what: `random #${out.length}: ${JSON.stringify(body).slice(0, 80)}`, body: JSON.stringify(body) });
  }
  return out;
}

describe("a fuzz of malformed and out-of-range bodies", () => {
  const all = cases();

  it(`answers each of ${all.length} bad bodies with a 4xx in OpenAI's shape, and queues nothing`, async () => {
    expect(all.length).toBeGreaterThanOrEqual(200);
    const failures: string[] = [];
    for (let i = 0; i < all.length; i += 16) {
      await Promise.all(all.slice(i, i + 16).map(async ({ what, body }) => {
        const response = await edge.chat(body);
        const text = await response.text();
        let parsed: unknown = null;
        try { parsed = JSON.parse(text); } catch { /* reported below */ }
        if (response.status < 400 || response.status >= 500 || !isErrorBody(parsed)) {
          failures.push(`${what} → ${response.status} ${text.slice(0, 120)}`);
        }
      }));
    }
    expect(failures).toEqual([]);
    expect(await edge.waitingJobs()).toBe(0);
  });

  it("names the offending parameter for a single out-of-range value", async () => {
    for (const param of ["temperature", "top_p", "min_p", "top_k", "presence_penalty", "frequency_penalty", "repetition_penalty", "max_tokens", "seed", "n"]) {
      const response = await edge.chat(hello({ [param]: badValues[param][0] }));
      expect(response.status, param).toBe(400);
      expect(((await response.json()) as { error: { param: string } }).error.param, param).toBe(param);
    }
  });
});
