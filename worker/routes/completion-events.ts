/**
 * GET /v1/chat/completions/{id}/events: resume a completion's SSE stream after `Last-Event-ID`
 * (header, or `last_event_id` query for clients that cannot set headers). Only the key that created
 * the completion may read it; an unknown, foreign or expired one is 404 (checked before the stream is
 * read). A resume is charged like a request, may not start past the stream's end, and has the same
 * deadline as any relay. A resume within the grace period of a disconnect continues the same generation.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { ApiError } from "../../shared/errors.ts";
import { redisKeys } from "../../shared/redis-keys.ts";
import type { AppEnv } from "../app-env.ts";
import type { CompletionMeta } from "../completion-meta.ts";
import { liveReaders } from "../completion-readers.ts";
import { CompletionSession, type Lease } from "../completion-session.ts";
import { admit, release } from "../rate-limit.ts";
import { loadOwnedMeta, requireCompletionId } from "../owned-completion.ts";
import { asServiceError, closeRedis, openRedis } from "../redis.ts";
import { relaySSE } from "../relay.ts";
import { compareEntryIds, isStreamEntryId, STREAM_START, StreamReader } from "../stream-reader.ts";
import { waitUntilOf } from "../wait-until.ts";

export const completionEventRoutes = new Hono<AppEnv>()
  .get("/chat/completions/:id/events", async (c) => {
    const config = c.get("config");
    const id = c.req.param("id");
    requireCompletionId(id);
    const from = c.req.header("last-event-id") ?? c.req.query("last_event_id") ?? STREAM_START;
    if (!isStreamEntryId(from)) {
      throw ApiError.invalid("'Last-Event-ID' must be a stream event id such as '1700000000000-0'.", "Last-Event-ID");
    }

    const caller = c.get("caller");
    const keys = redisKeys(config.redisPrefix);
    const redis = await openRedis(config.redisUrl);
    let reader: StreamReader;
    let meta: CompletionMeta;
    let generation: Lease;
    let own: Lease | null = null;
    try {
      meta = await loadOwnedMeta(redis, keys, id, caller.keyHash);
      // Charged like a request (one of the key's requests per minute, a concurrency slot). With no
      // other reader left, the resume takes over the generation's own slot; a second reader needs one.
      const slot = await liveReaders(redis, keys, id) === 0 ? id : `${id}:resume:${crypto.randomUUID()}`;
      const admission = await admit(redis, keys, { keyHash: caller.keyHash, limits: caller.limits, slot, estimatedTokens: 0, leaseMs: config.leaseMs });
      generation = { keyHash: caller.keyHash, slot: id, admission };
      if (slot !== id) own = { keyHash: caller.keyHash, slot, admission };
      reader = new StreamReader(redis, keys.stream(id), from);
      const last = await reader.last();
      if (from !== STREAM_START && (last === null || compareEntryIds(from, last.id) > 0)) {
        await release(redis, keys, caller.keyHash, slot, admission, null);
        throw ApiError.invalid(`'Last-Event-ID' ${from} is past the end of this completion's stream.`, "Last-Event-ID", "invalid_last_event_id");
      }
      // The client already has everything up to the final entry: only the end marker is left.
      if (last !== null && (last.event.type === "done" || last.event.type === "error") && compareEntryIds(from, last.id) >= 0) {
        await release(redis, keys, caller.keyHash, slot, admission, null);
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
    const session = new CompletionSession({
      redis, keys, id, redisUrl: config.redisUrl, generation, own, reconciles: false, leaseMs: config.leaseMs, waitUntil: waitUntilOf(c),
    });
    try {
      await session.keepLease(); // registers this reader at once (a disconnected one's grace period looks for it)
    } catch (err) {
      await session.finish(null, false);
      throw asServiceError(err);
    }
    return relaySSE(c, {
      session, reader, meta, prices: config.prices,
      keepAliveMs: config.sseKeepAliveMs, resumeGraceMs: config.resumeGraceMs, stalledWriteMs: config.stalledWriteMs, deadline: Date.now() + config.relayDeadlineMs,
    });
  });
