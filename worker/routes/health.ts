/** GET /health: the Worker is up and can reach Redis (503 with Retry-After when it cannot). */
import type { Context } from "hono";
import type { AppEnv } from "../app-env.ts";
import { closeRedis, openRedis } from "../redis.ts";

export async function health(c: Context<AppEnv>): Promise<Response> {
  const started = Date.now();
  const redis = await openRedis(c.get("config").redisUrl); // throws the 503
  try {
    await redis.ping();
  } finally {
    await closeRedis(redis);
  }
  return c.json({ status: "ok", redis: "ok", redis_ms: Date.now() - started });
}
