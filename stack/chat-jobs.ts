/**
 * The Worker's side of Redis without the Worker, for tests and bench:node: builds contract jobs,
 * enqueues them the way the Worker does (BullMQ Queue, job id = completion id), raises cancels, and
 * reads request streams back as contract events.
 */
import { Queue } from "bullmq";
import { Cluster, Redis } from "ioredis";
import { decodeStreamEvent, newCompletionId, PROTOCOL_VERSION, type ChatJob, type StreamEvent } from "../shared/protocol.ts";
import { CANCEL_TTL_SECONDS, keyPatterns, redisKeys, type RedisKeys } from "../shared/redis-keys.ts";
import type { ChatRequest } from "../shared/request-schema.ts";

export function chatRequest(overrides: Partial<ChatRequest> = {}): ChatRequest {
  return {
    model: "microsoft/phi-4",
    messages: [{ role: "user", content: "Write a haiku about queues." }],
    stream: true,
    includeUsage: true,
    maxTokens: 8,
    temperature: 1,
    topP: 1,
    minP: 0,
    topK: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repetitionPenalty: 1,
    seed: "7",
    stop: [],
    n: 1,
    logprobs: false,
    topLogprobs: 0,
    logitBias: {},
    user: null,
    tools: [],
    toolChoice: "none",
    parallelToolCalls: true,
    responseFormat: { type: "text" },
    prompts: null,
    echo: false,
    ...overrides,
  };
}

export function chatJob(overrides: Partial<ChatRequest> = {}, id = newCompletionId()): ChatJob {
  return { protocol: PROTOCOL_VERSION, id, created: Math.floor(Date.now() / 1000), enqueuedAt: Date.now(), request: chatRequest(overrides) };
}

export interface StreamEntryOf {
  id: string;
  event: StreamEvent;
}

/** The Worker's side of Redis for one test prefix. */
export class TestWorker {
  readonly keys: RedisKeys;
  readonly queue: Queue;

  /** On the shared Redis unless given another connection (a private server, a cluster). */
  constructor(readonly prefix: string, readonly redis: Redis | Cluster = new Redis("redis://127.0.0.1:6379", { maxRetriesPerRequest: null })) {
    this.keys = redisKeys(prefix);
    this.queue = new Queue(this.keys.queue, { connection: this.redis, prefix: this.keys.queuePrefix });
  }

  /** Enqueues as the Worker does: job id = completion id, 3 attempts. */
  async enqueue(job: ChatJob | Record<string, unknown>, id = (job as ChatJob).id): Promise<string> {
    await this.queue.add("chat", job, { jobId: id, attempts: 3, removeOnFail: { age: 3600 } });
    return id;
  }

  async cancel(id: string): Promise<void> {
    await this.redis.multi().set(this.keys.cancel(id), "1", "EX", CANCEL_TTL_SECONDS).publish(this.keys.cancelChannel, id).exec();
  }

  async entries(id: string): Promise<StreamEntryOf[]> {
    const raw = (await this.redis.xrange(this.keys.stream(id), "-", "+")) as Array<[string, string[]]>;
    return raw.map(([entryId, fields]) => ({ id: entryId, event: decodeStreamEvent(fields) }));
  }

  async events(id: string): Promise<StreamEvent[]> {
    return (await this.entries(id)).map((e) => e.event);
  }

  /** Reads the stream until `done`/`error` (blocking reads), failing after timeoutMs. */
  async waitForEnd(id: string, timeoutMs = 30_000): Promise<StreamEvent[]> {
    const reader = this.redis.duplicate();
    reader.on("error", () => {}); // reconnects are expected in chaos tests; a read that fails surfaces itself
    const events: StreamEvent[] = [];
    let cursor = "0-0";
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`stream of ${id} did not end within ${timeoutMs} ms (${events.length} events)`);
        const reply = (await reader.xread("BLOCK", Math.min(left, 1000), "STREAMS", this.keys.stream(id), cursor)) as Array<[string, Array<[string, string[]]>]> | null;
        for (const [entryId, fields] of reply?.[0]?.[1] ?? []) {
          cursor = entryId;
          const event = decodeStreamEvent(fields);
          events.push(event);
          if (event.type === "done" || event.type === "error") return events;
        }
      }
    } finally {
      reader.disconnect();
    }
  }

  /** Waits until the stream holds at least `count` deltas. */
  async waitForDeltas(id: string, count: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const events = await this.events(id);
      if (events.filter((e) => e.type === "delta").length >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`stream of ${id} did not reach ${count} deltas`);
  }

  /** Removes every key under this test's prefix. */
  async cleanup(): Promise<void> {
    await this.queue.close();
    const servers = this.redis instanceof Cluster ? this.redis.nodes("master") : [this.redis];
    for (const server of servers) {
      for (const pattern of keyPatterns(this.prefix)) {
        let cursor = "0";
        do {
          const [next, keys] = await server.scan(cursor, "MATCH", pattern, "COUNT", 1000);
          cursor = next;
          // One DEL per key: on a cluster a multi-key DEL must stay within one slot.
          if (keys.length > 0) await server.pipeline(keys.map((key) => ["del", key])).exec();
        } while (cursor !== "0");
      }
    }
    this.redis.disconnect();
  }
}

/** Choice texts of a finished stream. */
export function textsOf(events: StreamEvent[], n = 1): string[] {
  const texts = Array.from({ length: n }, () => "");
  for (const e of events) if (e.type === "delta") texts[e.index] += e.text;
  return texts;
}

export function uniquePrefix(name: string): string {
  return `phi4test-${name}-${process.pid}-${Date.now().toString(36)}`;
}
