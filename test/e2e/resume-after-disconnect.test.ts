/**
 * The whole stack: a stream dropped after 5 events and resumed a moment later with `Last-Event-ID`
 * continues the same generation (the disconnect's grace period) to the same end, with the same text
 * as the same seeded request read without interruption.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../../stack/stack-process.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ gpuNodes: 1 });
}, 180_000);
afterAll(async () => {
  await stack?.stop();
}, 60_000);

const body = {
  model: "microsoft/phi-4",
  messages: [{ role: "user", content: "Tell me a long story about a lighthouse." }],
  seed: 20261129,
  temperature: 1,
  max_tokens: 300,
  // Ban both end-of-sequence ids so the generation runs to max_tokens.
  logit_bias: { "100265": -100, "100257": -100 },
  stream: true,
  stream_options: { include_usage: true },
};

interface Chunk { choices: Array<{ delta: { content?: string }; finish_reason: string | null }>; usage?: { completion_tokens: number } | null }

/** Reads SSE events; stops (and drops the connection) after `limit` events when given. */
async function readEvents(response: Response, limit = Infinity): Promise<EventSourceMessage[]> {
  const events: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (e) => events.push(e) });
  const decoder = new TextDecoder();
  const reader = response.body!.getReader();
  while (events.length < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    parser.feed(decoder.decode(value, { stream: true }));
  }
  await reader.cancel();
  return events.slice(0, limit);
}

function summary(events: EventSourceMessage[]) {
  const chunks = events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data) as Chunk);
  return {
    text: chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""),
    finish: chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean),
    completionTokens: chunks.at(-1)?.usage?.completion_tokens,
    done: events.at(-1)?.data === "[DONE]",
  };
}

const post = (json: unknown) => fetch(`${stack.baseURL}/chat/completions`, {
  method: "POST",
  headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
  body: JSON.stringify(json),
});

describe("resume after a dropped connection", () => {
  it("completes the same generation after a drop at 5 events and a resume within 1 s", async () => {
    const whole = summary(await readEvents(await post(body)));
    expect(whole.done).toBe(true);

    const first = await readEvents(await post(body), 5);
    expect(first).toHaveLength(5);
    const id = (JSON.parse(first[0].data) as { id: string }).id;
    await new Promise((r) => setTimeout(r, 1000));
    const again = await fetch(`${stack.baseURL}/chat/completions/${id}/events`, {
      headers: { authorization: `Bearer ${stack.apiKey}`, "last-event-id": first.at(-1)!.id! },
    });
    expect(again.status).toBe(200);
    const resumed = summary([...first, ...await readEvents(again)]);
    expect(resumed.done).toBe(true);
    expect(resumed.finish).toEqual(whole.finish);
    expect(resumed.completionTokens).toBe(whole.completionTokens);
    expect(resumed.text).toBe(whole.text);
    expect(whole.finish).toEqual(["length"]);
    expect(resumed.completionTokens).toBe(300);
  });
});
