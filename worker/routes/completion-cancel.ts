/**
 * POST /v1/chat/completions/{id}/cancel: the owner stops a generation now (no grace period). The node
 * ends the stream with `done` (finish_reason as far as it got); readers see that end as usual.
 */
import { Hono } from "hono";
import { redisKeys } from "../../shared/redis-keys.ts";
import type { AppEnv } from "../app-env.ts";
import { raiseCancel } from "../cancel.ts";
import { loadOwnedMeta, requireCompletionId } from "../owned-completion.ts";
import { asServiceError, closeRedis, openRedis } from "../redis.ts";
import { lastEntry } from "../stream-reader.ts";

export const completionCancelRoutes = new Hono<AppEnv>()
  .post("/chat/completions/:id/cancel", async (c) => {
    const config = c.get("config");
    const id = c.req.param("id");
    requireCompletionId(id);
    const keys = redisKeys(config.redisPrefix);
    const redis = await openRedis(config.redisUrl);
    try {
      await loadOwnedMeta(redis, keys, id, c.get("caller").keyHash);
      const last = await lastEntry(redis, keys.stream(id));
      const finished = last !== null && (last.event.type === "done" || last.event.type === "error");
      if (!finished) await raiseCancel(redis, keys, id);
      // `cancelled` is false when the completion had already ended on its own.
      return c.json({ id, object: "chat.completion.cancellation", cancelled: !finished });
    } catch (err) {
      throw asServiceError(err);
    } finally {
      await closeRedis(redis);
    }
  });
