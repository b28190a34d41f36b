/**
 * Is any GPU node alive? Checked before a request is queued: with no node announced in the registry
 * (shared/node-registry.ts) the answer is 503 with Retry-After, not a request that waits on nothing.
 */
import { ApiError } from "../shared/errors.ts";
import { LIVE_NODES_SCRIPT } from "../shared/node-registry.ts";
import type { RedisKeys } from "../shared/redis-keys.ts";
import { UNAVAILABLE_RETRY_AFTER_S, type RedisClient } from "./redis.ts";

export async function requireLiveNode(redis: RedisClient, keys: RedisKeys): Promise<void> {
  const live = Number(await redis.eval(LIVE_NODES_SCRIPT, 1, keys.nodes));
  if (live > 0) return;
  throw new ApiError(503, "service_unavailable", "No GPU node is serving right now. Please retry shortly.", "no_capacity", null, UNAVAILABLE_RETRY_AFTER_S);
}
