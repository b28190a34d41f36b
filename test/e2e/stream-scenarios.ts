/**
 * Two streaming scenarios every stack configuration must pass (single Redis, Redis Cluster): a client that
 * aborts mid-stream frees the node's work, and a stream resumed from Last-Event-ID has no gap or duplicate.
 */
import { createParser } from "eventsource-parser";
import type OpenAI from "openai";
import { expect } from "vitest";
import { metric, type Stack } from "../../stack/stack-process.ts";

const model = "microsoft/phi-4";
const user = (content: string) => [{ role: "user" as const, content }];

export interface SseEvent {
  id?: string;
  data: string;
}

export async function readSse(res: Response): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  const parser = createParser({ onEvent: (e) => events.push({ id: e.id, data: e.data }) });
  const decoder = new TextDecoder();
  for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(piece, { stream: true }));
  return events;
}

/**
 * Aborts a long stream after 5 content chunks; the request held cache blocks, and the node ends it as
 * cancelled (not by running out its 5000 tokens) and frees them. The generation goes on through the
 * disconnect's grace period (RESUME_GRACE_MS) in case the client resumes; then the Worker raises the cancel.
 */
export async function abortFreesNodeBlocks(client: OpenAI, stack: Stack, timeoutMs: number): Promise<void> {
  const metrics = stack.nodes[0].metrics;
  const cancelled = () => metric(metrics, "phi4_requests_total", { outcome: "cancelled" });
  const cancelledBefore = await cancelled();
  const controller = new AbortController();
  let seen = 0;
  let usedWhileStreaming = 0;
  // The SDK ends its iterator quietly when its own signal aborts the request.
  const stream = await client.chat.completions.create({ model, messages: user("long"), max_tokens: 5000, stream: true }, { signal: controller.signal });
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta?.content !== undefined && ++seen === 5) {
      usedWhileStreaming = await metric(metrics, "phi4_kv_blocks_used");
      controller.abort();
      break;
    }
  }
  expect(seen).toBe(5);
  expect(usedWhileStreaming).toBeGreaterThan(0);
  await expect.poll(cancelled, { timeout: timeoutMs, interval: 200 }).toBe(cancelledBefore + 1);
  await expect.poll(() => metric(metrics, "phi4_kv_blocks_used"), { timeout: timeoutMs, interval: 200 }).toBe(0);
}

/** Reads a whole greedy stream, then resumes it from its middle event: exactly the rest comes back. */
export async function resumeHasNoGapOrDuplicate(stack: Stack): Promise<void> {
  const res = await fetch(`${stack.baseURL}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: user("resume me"), max_tokens: 20, temperature: 0, stream: true }),
  });
  expect(res.status).toBe(200);
  const full = await readSse(res);
  expect(full.at(-1)!.data).toBe("[DONE]");
  const contentEvents = full.filter((e) => e.data !== "[DONE]");
  const cut = Math.floor(contentEvents.length / 2);
  const completionId = JSON.parse(contentEvents[0].data).id as string;
  const again = await fetch(`${stack.baseURL}/chat/completions/${completionId}/events`, {
    headers: { authorization: `Bearer ${stack.apiKey}`, "last-event-id": contentEvents[cut].id! },
  });
  expect(again.status).toBe(200);
  expect((await readSse(again)).map((e) => e.data)).toEqual(full.slice(cut + 1).map((e) => e.data));
}
