/**
 * Finding a completion for the key that asks about it (resume, cancel): the id's shape, then its meta,
 * and only the key that created it gets it. Unknown, foreign and expired all read the same: 404.
 */
import { ApiError } from "../shared/errors.ts";
import type { RedisKeys } from "../shared/redis-keys.ts";
import { constantTimeEqual } from "./api-key.ts";
import { loadMeta, type CompletionMeta } from "./completion-meta.ts";
import { notFound } from "./error-response.ts";
import type { RedisClient } from "./redis.ts";

const COMPLETION_ID = /^chatcmpl-[A-Za-z0-9]{1,64}$/;

function missing(id: string): ApiError {
  return notFound(`No completion '${id.slice(0, 80)}' is available (unknown, not yours, or expired).`, "completion_not_found");
}

/** Throws the 404 for an id that cannot be a completion's, before anything is looked up. */
export function requireCompletionId(id: string): void {
  if (!COMPLETION_ID.test(id)) throw missing(id);
}

export async function loadOwnedMeta(redis: RedisClient, keys: RedisKeys, id: string, keyHash: string): Promise<CompletionMeta> {
  const meta = await loadMeta(redis, keys, id);
  if (!meta || !constantTimeEqual(meta.ownerKeyHash, keyHash)) throw missing(id);
  return meta;
}
