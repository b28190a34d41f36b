/**
 * Who is reading a completion's stream right now: a sorted set of reader tokens scored by lease
 * expiry, renewed with the relay's other leases. A reader that disconnects removes itself and, during
 * its grace period, looks here to learn whether a resume took over before it raises the cancel.
 */
import type { RedisKeys } from "../shared/redis-keys.ts";
import type { RedisClient } from "./redis.ts";

/** Beside the completion's meta (same hash slot when the keys carry one), expiring with it. */
export function readersKey(keys: RedisKeys, id: string): string {
  return `${keys.meta(id)}:readers`;
}

export async function holdReader(redis: RedisClient, keys: RedisKeys, id: string, token: string, leaseMs: number): Promise<void> {
  const key = readersKey(keys, id);
  await redis.multi().zadd(key, Date.now() + leaseMs, token).pexpire(key, 2 * leaseMs).exec();
}

export async function dropReader(redis: RedisClient, keys: RedisKeys, id: string, token: string): Promise<void> {
  await redis.zrem(readersKey(keys, id), token);
}

export async function liveReaders(redis: RedisClient, keys: RedisKeys, id: string): Promise<number> {
  return redis.zcount(readersKey(keys, id), `(${Date.now()}`, "+inf");
}
