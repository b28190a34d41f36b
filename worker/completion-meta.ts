/**
 * What the Worker keeps about a completion so that `GET /v1/chat/completions/{id}/events` can resume
 * it: the owner (key hash) and the options that shape its chunks. Lives as long as the stream.
 */
import { STREAM_TTL_SECONDS, type RedisKeys } from "../shared/redis-keys.ts";
import { readersKey } from "./completion-readers.ts";
import type { RedisClient } from "./redis.ts";

export interface CompletionMeta {
  ownerKeyHash: string;
  model: string;
  created: number;
  n: number;
  logprobs: boolean;
  includeUsage: boolean;
  /** `text`: a legacy `/v1/completions` request (text_completion objects); absent: chat. */
  kind?: "text";
}

/** While queued or running, a request may take this long before its stream gets its final TTL. */
const PENDING_TTL_SECONDS = STREAM_TTL_SECONDS + 3600;

export async function saveMeta(redis: RedisClient, keys: RedisKeys, id: string, meta: CompletionMeta): Promise<void> {
  await redis.set(keys.meta(id), JSON.stringify(meta), "EX", PENDING_TTL_SECONDS);
}

export async function loadMeta(redis: RedisClient, keys: RedisKeys, id: string): Promise<CompletionMeta | null> {
  const raw = await redis.get(keys.meta(id));
  return raw === null ? null : (JSON.parse(raw) as CompletionMeta);
}

/** Once the stream has ended, it and its meta expire together: resume answers 404 after that. */
export async function expireFinished(redis: RedisClient, keys: RedisKeys, id: string): Promise<void> {
  await redis.multi()
    .expire(keys.stream(id), STREAM_TTL_SECONDS)
    .expire(keys.meta(id), STREAM_TTL_SECONDS)
    .del(readersKey(keys, id))
    .exec();
}
