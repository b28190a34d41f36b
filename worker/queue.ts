/**
 * The producer side of the "chat" BullMQ queue the GPU nodes consume. The Queue rides on the request's
 * own Redis connection (BullMQ treats a passed-in client as shared and leaves it open on close()).
 */
import { Queue } from "bullmq";
import { ApiError } from "../shared/errors.ts";
import type { ChatJob } from "../shared/protocol.ts";
import type { RedisKeys } from "../shared/redis-keys.ts";
import { sha256Hex } from "./api-key.ts";
import type { RedisClient } from "./redis.ts";

/** Failover: a job whose node died or failed is retried on another node, then kept an hour for inspection. */
export const CHAT_JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: "exponential", delay: 1000 },
  removeOnComplete: true,
  removeOnFail: { age: 3600 },
} as const;

/** How long a client is asked to wait when the queue is over its depth limit. */
export const QUEUE_FULL_RETRY_AFTER_S = 2;

export function chatQueue(redis: RedisClient, keys: RedisKeys): Queue {
  return new Queue(keys.queue, { connection: redis, prefix: keys.queuePrefix, skipVersionCheck: true });
}

/** Back-pressure: jobs waiting for a node (not those already running). */
export async function checkQueueDepth(queue: Queue, maxDepth: number): Promise<void> {
  const waiting = await queue.getJobCountByTypes("waiting", "prioritized");
  if (waiting >= maxDepth) {
    throw new ApiError(429, "rate_limit_error", "The service is at capacity: too many requests are queued. Retry shortly.", "queue_full", null, QUEUE_FULL_RETRY_AFTER_S);
  }
}

export async function enqueueChat(queue: Queue, job: ChatJob): Promise<void> {
  await queue.add("chat", job, { jobId: job.id, ...CHAT_JOB_OPTIONS });
}

/**
 * The job's prefix-cache salt (ChatJob.cacheSalt): a hash of the key's id (its hash), so one key's
 * requests never find another key's cached prompt blocks; keys given the same `cacheGroup` (one
 * organisation) share their cache. Never the key itself.
 */
export async function prefixCacheSalt(keyHash: string, cacheGroup?: string): Promise<string> {
  return (await sha256Hex(cacheGroup === undefined ? `prefix-cache:key:${keyHash}` : `prefix-cache:group:${cacheGroup}`)).slice(0, 16);
}
