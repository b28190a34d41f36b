/**
 * What the Worker tests share: a unique Redis prefix per test file and run (so runs never collide),
 * the app called with that prefix, the GPU node's part played with plain Redis commands (XADD of
 * contract events), and an SSE reader built on eventsource-parser.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { Queue } from "bullmq";
import Redis from "ioredis";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { encodeStreamEvent, type ChatJob, type StreamEvent } from "../../shared/protocol.ts";
import { keyPatterns, redisKeys, type RedisKeys } from "../../shared/redis-keys.ts";
import { sha256Hex } from "../api-key.ts";
import { app } from "../app.ts";
import type { WorkerEnv } from "../env.ts";

export const DEV_KEY = "sk-test-dev-key";
export const MODEL = "microsoft/phi-4";

export class EdgeHarness {
  readonly prefix: string;
  readonly keys: RedisKeys;
  readonly redis: Redis;
  private readonly queue: Queue;
  private contexts: ReturnType<typeof createExecutionContext>[] = [];

  private announced = false;

  /** `announceNode: false` leaves the node registry empty, as when no GPU node is running. */
  constructor(name: string, private readonly overrides: Partial<WorkerEnv> = {}, private readonly options: { announceNode?: boolean } = {}) {
    this.prefix = `phi4test-${name}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    this.keys = redisKeys(this.prefix);
    this.redis = new Redis("redis://127.0.0.1:6379", { commandTimeout: 5000, maxRetriesPerRequest: 1 });
    this.queue = new Queue(this.keys.queue, { connection: this.redis, prefix: this.keys.queuePrefix, skipVersionCheck: true });
  }

  env(extra: Partial<WorkerEnv> = {}): WorkerEnv {
    return { ...(env as unknown as WorkerEnv), REDIS_PREFIX: this.prefix, SSE_HOLD_MS: "3000", SSE_KEEPALIVE_MS: "10000", RESUME_GRACE_MS: "300", ...this.overrides, ...extra };
  }

  /** One request through the app, with this file's prefix; waitUntil work is awaited at close(). */
  async fetch(path: string, init: RequestInit = {}, extraEnv: Partial<WorkerEnv> = {}): Promise<Response> {
    if (!this.announced && this.options.announceNode !== false) {
      // The node's part: one GPU node alive for the whole test file (a heartbeat far in the future).
      await this.redis.zadd(this.keys.nodes, Date.now() + 86_400_000, "test-node");
      this.announced = true;
    }
    const ctx = createExecutionContext();
    const response = await app.fetch(new Request(`http://edge.test${path}`, init), this.env(extraEnv), ctx);
    this.contexts.push(ctx);
    return response;
  }

  /** Waits for the Worker's background work (cleanup after disconnects) so far. */
  async settle(): Promise<void> {
    // Work registered with waitUntil after the response (disconnect cleanup) counts too: wait at settle time.
    const contexts = this.contexts;
    this.contexts = [];
    await Promise.all(contexts.map((ctx) => waitOnExecutionContext(ctx)));
  }

  chat(body: unknown, key: string = DEV_KEY, path = "/v1/chat/completions", extraEnv: Partial<WorkerEnv> = {}): Promise<Response> {
    return this.fetch(path, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    }, extraEnv);
  }

  /**
   * The node's view: the next job waiting in the queue (polls until one arrives), taken the way a node
   * takes it: off BullMQ's wait list onto its active list, so the Worker sees a running job.
   */
  async nextJob(timeoutMs = 5000): Promise<ChatJob> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const jobs = await this.queue.getJobs(["waiting"], 0, 0, true);
      if (jobs.length > 0) {
        const job = jobs[0];
        await this.redis.multi().lrem(`${this.keys.queuePrefix}:chat:wait`, 0, job.id!).lpush(`${this.keys.queuePrefix}:chat:active`, job.id!).exec();
        return job.data as ChatJob;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error("no job was enqueued");
  }

  /** The development key's hash: what its rate limits and concurrency slots are keyed by. */
  devKeyHash(): Promise<string> {
    return sha256Hex(DEV_KEY);
  }

  async waitingJobs(): Promise<number> {
    return this.queue.getJobCountByTypes("waiting");
  }

  /**
   * Appends contract events to a completion's stream, as a node does; returns their entry ids. All in
   * one transaction, so a Worker blocked in XREAD receives them as one batch (the harder case).
   */
  async publish(id: string, ...events: StreamEvent[]): Promise<string[]> {
    const tx = this.redis.multi();
    for (const event of events) tx.xadd(this.keys.stream(id), "*", ...encodeStreamEvent(event));
    const replies = (await tx.exec())!;
    return replies.map(([err, entryId]) => {
      if (err) throw err;
      return entryId as string;
    });
  }

  async close(): Promise<void> {
    await this.settle();
    for (const pattern of keyPatterns(this.prefix)) {
      let cursor = "0";
      do {
        const [next, found] = await this.redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        if (found.length) await this.redis.del(...found);
        cursor = next;
      } while (cursor !== "0");
    }
    await this.queue.close();
    await this.redis.quit();
  }
}

export interface SSEStream {
  events: EventSourceMessage[];
  comments: string[];
}

/** Reads a whole SSE response body through eventsource-parser. */
export async function readSSE(response: Response): Promise<SSEStream> {
  const out: SSEStream = { events: [], comments: [] };
  const parser = createParser({ onEvent: (e) => out.events.push(e), onComment: (c) => out.comments.push(c) });
  const decoder = new TextDecoder();
  const reader = response.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parser.feed(decoder.decode(value, { stream: true }));
  }
  return out;
}

/** Reads SSE events until `count` have arrived, then cancels the body: a client going away. */
export async function readSSEThenDisconnect(response: Response, count: number): Promise<SSEStream> {
  const out: SSEStream = { events: [], comments: [] };
  const parser = createParser({ onEvent: (e) => out.events.push(e), onComment: (c) => out.comments.push(c) });
  const decoder = new TextDecoder();
  const reader = response.body!.getReader();
  while (out.events.length < count) {
    const { done, value } = await reader.read();
    if (done) break;
    parser.feed(decoder.decode(value, { stream: true }));
  }
  await reader.cancel();
  return out;
}

export const hello = (extra: Record<string, unknown> = {}) => ({
  model: MODEL,
  messages: [{ role: "user", content: "Hello" }],
  ...extra,
});

/** A node's answer to one prompt: start, one delta per piece (the last with its reason), done. */
export function answer(pieces: string[], promptTokens = 7, n = 1): StreamEvent[] {
  const events: StreamEvent[] = [{ type: "start", promptTokens, n, seed: "42", node: "test-node" }];
  for (let index = 0; index < n; index++) {
    pieces.forEach((text, i) => {
      events.push({ type: "delta", index, text, tokens: [1000 + i], ...(i === pieces.length - 1 ? { finishReason: "stop" as const } : {}) });
    });
  }
  events.push({ type: "done", finishReasons: new Array(n).fill("stop"), usage: { promptTokens, completionTokens: pieces.length * n } });
  return events;
}
