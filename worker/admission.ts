/**
 * Admission and enqueue of one completion, on one Redis connection: a live GPU node, queue depth (back-pressure), the
 * key's rate limits, the completion's meta (for resume), then the BullMQ job. Either everything
 * happens or the key's charge is handed back.
 */
import type { ChatJob } from "../shared/protocol.ts";
import type { RedisKeys } from "../shared/redis-keys.ts";
import type { CompletionMeta } from "./completion-meta.ts";
import { saveMeta } from "./completion-meta.ts";
import type { RateLimits } from "./env.ts";
import { chatQueue, checkQueueDepth, enqueueChat } from "./queue.ts";
import { requireLiveNode } from "./node-pool.ts";
import { admit, release, type Admission } from "./rate-limit.ts";
import type { RedisClient } from "./redis.ts";

export interface AdmissionTicket {
  keyHash: string;
  limits: RateLimits;
  job: ChatJob;
  meta: CompletionMeta;
  estimatedTokens: number;
  maxQueueDepth: number;
  leaseMs: number;
}

export async function admitAndEnqueue(redis: RedisClient, keys: RedisKeys, ticket: AdmissionTicket): Promise<Admission> {
  const queue = chatQueue(redis, keys);
  let admission: Admission | null = null;
  try {
    await requireLiveNode(redis, keys);
    await checkQueueDepth(queue, ticket.maxQueueDepth);
    admission = await admit(redis, keys, {
      keyHash: ticket.keyHash, limits: ticket.limits, slot: ticket.job.id, estimatedTokens: ticket.estimatedTokens, leaseMs: ticket.leaseMs,
    });
    await saveMeta(redis, keys, ticket.job.id, ticket.meta);
    await enqueueChat(queue, ticket.job);
    return admission;
  } catch (err) {
    if (admission) await release(redis, keys, ticket.keyHash, ticket.job.id, admission, 0).catch(() => {});
    throw err;
  } finally {
    await queue.close().catch(() => {});
  }
}
