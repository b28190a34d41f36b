/** The cancel signal a node watches: a key with a TTL (seen at its next step) and a pub/sub message. */
import { CANCEL_TTL_SECONDS, type RedisKeys } from "../shared/redis-keys.ts";
import type { RedisClient } from "./redis.ts";

export async function raiseCancel(redis: RedisClient, keys: RedisKeys, id: string): Promise<void> {
  await redis.multi()
    .set(keys.cancel(id), "1", "EX", CANCEL_TTL_SECONDS)
    .publish(keys.cancelChannel, id)
    .exec();
}
