/**
 * GET /v1/chat/completions/{id}/events: resume a completion's SSE stream after `Last-Event-ID`
 * (header, or `last_event_id` query for clients that cannot set headers). Only the key that created
 * the completion may read it; an unknown, foreign or expired one is 404.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { ApiError } from "../../shared/errors.ts";
import { redisKeys } from "../../shared/redis-keys.ts";
import { constantTimeEqual } from "../api-key.ts";
import type { AppEnv } from "../app-env.ts";
import { loadMeta, type CompletionMeta } from "../completion-meta.ts";
import { CompletionSession } from "../completion-session.ts";
import { notFound } from "../error-response.ts";
import { asServiceError, closeRedis, openRedis } from "../redis.ts";
import { relaySSE } from "../relay.ts";
import { compareEntryIds, isStreamEntryId, STREAM_START, StreamReader } from "../stream-reader.ts";
import { waitUntilOf } from "../wait-until.ts";

const COMPLETION_ID = /^chatcmpl-[A-Za-z0-9]{1,64}$/;

export const completionEventRoutes = new Hono<AppEnv>()
  .get("/chat/completions/:id/events", async (c) => {
    const config = c.get("config");
    const id = c.req.param("id");
    const missing = notFound(`No completion '${id.slice(0, 80)}' is available (unknown, not yours, or expired).`, "completion_not_found");
    if (!COMPLETION_ID.test(id)) throw missing;
    const from = c.req.header("last-event-id") ?? c.req.query("last_event_id") ?? STREAM_START;
    if (!isStreamEntryId(from)) {
      throw ApiError.invalid("'Last-Event-ID' must be a stream event id such as '1700000000000-0'.", "Last-Event-ID");
    }

    const keys = redisKeys(config.redisPrefix);
    const redis = await openRedis(config.redisUrl);
    let reader: StreamReader;
    let meta: CompletionMeta | null;
    try {
      meta = await loadMeta(redis, keys, id);
      if (!meta || !constantTimeEqual(meta.ownerKeyHash, c.get("caller").keyHash)) throw missing;
      reader = new StreamReader(redis, keys.stream(id), from);
      const last = await reader.last();
      // The client already has everything up to the final entry: only the end marker is left.
      if (last !== null && (last.event.type === "done" || last.event.type === "error") && compareEntryIds(from, last.id) >= 0) {
        await closeRedis(redis);
        const done = last.event.type === "done";
        return streamSSE(c, async (stream) => {
          if (done) await stream.writeSSE({ data: "[DONE]", id: last.id });
        });
      }
    } catch (err) {
      await closeRedis(redis);
      throw asServiceError(err);
    }
    const session = new CompletionSession(redis, keys, id, config.redisUrl, null, waitUntilOf(c));
    return relaySSE(c, { session, reader, meta, prices: config.prices, keepAliveMs: config.sseKeepAliveMs });
  });
