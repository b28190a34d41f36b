import { afterAll, describe, expect, it } from "vitest";
import { MAX_REQUEST_OUTPUT_TOKENS, NON_STREAMED_BUDGET_BYTES } from "../../shared/limits.ts";
import { outputTokenCap } from "../../shared/output-budget.ts";
import { answer, EdgeHarness, hello, readSSE } from "./harness.ts";

const edge = new EdgeHarness("output-limits");
afterAll(() => edge.close());

async function expect400(response: Response, code: string, param: string) {
  expect(response.status).toBe(400);
  const body = await response.json() as { error: { code: string; param: string; message: string } };
  expect(body.error).toMatchObject({ type: "invalid_request_error", code, param });
  return body.error.message;
}

describe("output limits", () => {
  it("refuses n × max_tokens above the per-request cap, before anything is queued", async () => {
    const message = await expect400(await edge.chat(hello({ n: 16, max_tokens: 16_000, stream: true })), "output_limit_exceeded", "max_tokens");
    expect(message).toContain(String(MAX_REQUEST_OUTPUT_TOKENS));
    // max_tokens unset: each choice may fill the context.
    await expect400(await edge.chat(hello({ n: 16, stream: true })), "output_limit_exceeded", "max_tokens");
    expect(await edge.waitingJobs()).toBe(0);
  });

  it("tightens the cap with top_logprobs", async () => {
    const plain = { n: 1, maxTokens: 1, logprobs: false, topLogprobs: 0, stream: true };
    const top20 = outputTokenCap({ ...plain, logprobs: true, topLogprobs: 20 });
    expect(top20).toBeLessThan(outputTokenCap(plain));
    expect(outputTokenCap(plain)).toBe(MAX_REQUEST_OUTPUT_TOKENS);
    const over = Math.ceil((top20 + 1) / 4);
    expect(over * 4).toBeLessThanOrEqual(MAX_REQUEST_OUTPUT_TOKENS); // allowed without logprobs
    await expect400(await edge.chat(hello({ n: 4, max_tokens: over, stream: true, logprobs: true, top_logprobs: 20 })), "output_limit_exceeded", "max_tokens");
    // The same shape without logprobs is queued.
    const responding = edge.chat(hello({ n: 4, max_tokens: over, stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["ok"], 3, 4));
    expect((await readSSE(await responding)).events.at(-1)!.data).toBe("[DONE]");
  });

  it("asks to stream a response too large for one body (400 naming 'stream'), and takes it streamed", async () => {
    const body = { n: 4, max_tokens: 2000, logprobs: true, top_logprobs: 20 };
    const message = await expect400(await edge.chat(hello(body)), "response_too_large", "stream");
    expect(message).toContain("stream: true");
    expect(message).toContain(String(NON_STREAMED_BUDGET_BYTES / 1_048_576));
    const responding = edge.chat(hello({ ...body, stream: true }));
    const job = await edge.nextJob();
    await edge.publish(job.id, ...answer(["ok"], 3, 4));
    expect((await readSSE(await responding)).events.at(-1)!.data).toBe("[DONE]");
  });
});
