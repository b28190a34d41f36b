/**
 * Two GPU nodes behind one edge; one is killed with SIGKILL while streams run. Every stream still
 * completes exactly once, and seeded streams read exactly what an uninterrupted run produces.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { metric, startStack, type Stack } from "../../stack/stack-process.ts";

let stack: Stack;
let client: OpenAI;
const model = "microsoft/phi-4";

beforeAll(async () => {
  // Short BullMQ locks so the dead node's jobs are noticed as stalled within a second or two.
  stack = await startStack({ gpuNodes: 2, extraEnv: { LOCK_DURATION_MS: "1500", STALLED_INTERVAL_MS: "500" } });
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.apiKey, maxRetries: 0, timeout: 120_000 });
}, 180_000);
afterAll(async () => {
  await stack?.stop();
}, 60_000);

async function stream(i: number): Promise<string> {
  const s = await client.chat.completions.create({
    model, stream: true, seed: 9000 + i, temperature: 1, max_tokens: 120,
    // Ban both end-of-sequence ids so every stream runs its full length.
    logit_bias: { "100265": -100, "100257": -100 },
    messages: [{ role: "user", content: `Failover story ${i}` }],
  });
  let text = "";
  for await (const chunk of s) text += chunk.choices[0]?.delta?.content ?? "";
  return text;
}

describe("a GPU node dies mid-stream", () => {
  it("every stream completes exactly once, without gap or duplicate", async () => {
    expect(stack.nodes).toHaveLength(2);
    const expected = await Promise.all(Array.from({ length: 8 }, (_, i) => stream(i)));
    const running = Array.from({ length: 8 }, (_, i) => stream(i));
    await new Promise((r) => setTimeout(r, 300));
    process.kill(stack.nodes[0].pid, "SIGKILL");
    const got = await Promise.all(running);
    expect(got).toEqual(expected);
    // The survivor really took over streams the dead node had started.
    expect(await metric(stack.nodes[1].metrics, "phi4_requests_resumed_total")).toBeGreaterThan(0);
  }, 120_000);
});
