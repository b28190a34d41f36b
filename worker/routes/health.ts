/**
 * GET /health: the Worker is up and can reach Redis (503 with Retry-After when it cannot). Reports
 * what a per-request connection costs here: connecting, one round trip, closing.
 */
import { Hono } from "hono";
import type { AppEnv } from "../app-env.ts";
import { closeRedis, openRedis } from "../redis.ts";

export const healthRoutes = new Hono<AppEnv>()
  .get("/health", async (c) => {
    const t0 = performance.now();
    const redis = await openRedis(c.get("config").redisUrl); // throws the 503
    const t1 = performance.now();
    try {
      await redis.ping();
    } finally {
      const t2 = performance.now();
      await closeRedis(redis);
      c.header("server-timing", `connect;dur=${(t1 - t0).toFixed(2)}, ping;dur=${(t2 - t1).toFixed(2)}, close;dur=${(performance.now() - t2).toFixed(2)}`);
    }
    return c.json({ status: "ok", redis: "ok" });
  });
