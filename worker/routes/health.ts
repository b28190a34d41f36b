/**
 * GET /health: the Worker is up and can reach Redis (503 with Retry-After when it cannot). The answer
 * is kept for HEALTH_CACHE_MS (per Redis URL, in the isolate), so unauthenticated callers cannot make
 * the Worker open a Redis connection per call. A fresh check reports what a per-request connection
 * costs here (Server-Timing: connecting, one round trip, closing); `checked_at` says when it ran.
 */
import { Hono } from "hono";
import type { ApiError } from "../../shared/errors.ts";
import type { AppEnv } from "../app-env.ts";
import { asServiceError, closeRedis, openRedis } from "../redis.ts";

interface Check {
  at: number;
  error: ApiError | null;
  timing: string;
}

/** A plain value in module scope (no socket), which workerd allows to outlive a request. */
const lastChecks = new Map<string, Check>();

async function checkRedis(url: string): Promise<Check> {
  const t0 = performance.now();
  let timing = "";
  try {
    const redis = await openRedis(url);
    const t1 = performance.now();
    try {
      await redis.ping();
    } finally {
      const t2 = performance.now();
      await closeRedis(redis);
      timing = `connect;dur=${(t1 - t0).toFixed(2)}, ping;dur=${(t2 - t1).toFixed(2)}, close;dur=${(performance.now() - t2).toFixed(2)}`;
    }
    return { at: Date.now(), error: null, timing };
  } catch (err) {
    return { at: Date.now(), error: asServiceError(err), timing };
  }
}

export const healthRoutes = new Hono<AppEnv>()
  .get("/health", async (c) => {
    const { redisUrl, healthCacheMs } = c.get("config");
    let check = lastChecks.get(redisUrl);
    if (!check || Date.now() - check.at >= healthCacheMs) {
      check = await checkRedis(redisUrl);
      lastChecks.set(redisUrl, check);
      if (check.timing) c.header("server-timing", check.timing);
    }
    if (check.error) throw check.error;
    return c.json({ status: "ok", redis: "ok", checked_at: new Date(check.at).toISOString() });
  });
