/**
 * The relay from a request's Redis Stream to the client: SSE for streaming requests (one SSE event per
 * stream entry, `id:` = entry id, keep-alive comments while nothing arrives), one JSON completion
 * otherwise. A node error that arrives before the first token becomes an HTTP error, not a 200: the
 * streaming response is held back (up to SSE_HOLD_MS) until the first token or the end.
 */
import type { Context } from "hono";
import { streamSSE, type SSEStreamingApi } from "hono/streaming";
import { ApiError, type ErrorType } from "../shared/errors.ts";
import type { Prices } from "../shared/pricing.ts";
import type { StreamEvent } from "../shared/protocol.ts";
import type { CompletionMeta } from "./completion-meta.ts";
import { ChunkRenderer, CompletionAssembler } from "./completion-render.ts";
import { TextChunkRenderer, TextCompletionAssembler } from "./text-completion-render.ts";
import type { CompletionSession } from "./completion-session.ts";
import { chatQueue } from "./queue.ts";
import { redisUnavailable } from "./redis.ts";
import { StalledWriteWatch } from "./stalled-write.ts";
import { compareEntryIds, lastEntry, STREAM_START, type StreamEntry, type StreamReader } from "./stream-reader.ts";
import { waitUntilOf } from "./wait-until.ts";

export const KEEP_ALIVE_COMMENT = ": keep-alive\n\n";

export function nodeError(event: Extract<StreamEvent, { type: "error" }>): ApiError {
  const retryAfter = event.status === 429 || event.status === 503 ? 1 : undefined;
  return new ApiError(event.status, event.errorType as ErrorType, event.message, event.code, event.param, retryAfter);
}

function relayFailure(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof Error && err.name === "ProtocolVersionError") {
    return new ApiError(500, "server_error", "The GPU node speaks another protocol version.", "protocol_mismatch");
  }
  return redisUnavailable();
}

/**
 * Why a quiet completion will never produce more, looked for whenever the stream has been quiet for a
 * keep-alive interval: BullMQ gave up on its job (every attempt failed without the node appending
 * `error`), or its job, meta or stream vanished (Redis restarted without persistence, or was flushed).
 * Either would otherwise leave the client waiting forever.
 */
async function deadEnd(session: CompletionSession, reader: StreamReader): Promise<ApiError | null> {
  const { redis, keys, id } = session;
  const queue = chatQueue(redis, keys);
  let state: string;
  try {
    state = await queue.getJobState(id);
  } finally {
    await queue.close().catch(() => {});
  }
  if (state === "failed") return new ApiError(500, "server_error", "The request failed on every GPU node it was tried on.", "job_failed");
  const [metaExists, streamExists] = await Promise.all([redis.exists(keys.meta(id)), redis.exists(keys.stream(id))]);
  const streamLost = streamExists === 0 && reader.position !== STREAM_START;
  if (state !== "unknown" && metaExists === 1 && !streamLost) return null;
  // A finished job is removed right after its `done` is written: an end past the cursor is no loss.
  const last = await lastEntry(redis, keys.stream(id));
  if (last && (last.event.type === "done" || last.event.type === "error") && compareEntryIds(last.id, reader.position) > 0) return null;
  return new ApiError(503, "service_unavailable", "The request was lost by the queue (its job or stream is gone, as after a Redis restart). Please retry.", "request_lost", null, 1);
}

export function onClientGone(signal: AbortSignal | undefined, handler: () => void): void {
  if (!signal) return;
  if (signal.aborted) handler();
  else signal.addEventListener("abort", handler, { once: true });
}

export interface HeldStart {
  /** Entries read before the response was committed, to be relayed first. */
  buffered: StreamEntry[];
  /** A node error that came before any token: answer it as an HTTP error. */
  error: ApiError | null;
}

/** Reads until the first token, the end, or holdMs: whatever comes first. */
export async function holdForFirstToken(reader: StreamReader, holdMs: number): Promise<HeldStart> {
  const buffered: StreamEntry[] = [];
  const deadline = Date.now() + holdMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return { buffered, error: null };
    // Keep the whole batch: the reader's cursor is already past all of it.
    let open = false;
    for (const entry of await reader.read(left)) {
      if (!open && entry.event.type === "error") return { buffered, error: nodeError(entry.event) };
      buffered.push(entry);
      if (entry.event.type !== "start") open = true;
    }
    if (open) return { buffered, error: null };
  }
}

/** What a relay reads from and how it renders: one completion's session, stream cursor and options. */
export interface Relay {
  session: CompletionSession;
  reader: StreamReader;
  meta: CompletionMeta;
  prices: Prices;
  /** Quiet interval after which a keep-alive comment goes out (and a failed or vanished job is looked for). */
  keepAliveMs: number;
  /** How long a streaming client that disconnected has to resume before the generation is cancelled. */
  resumeGraceMs: number;
  /** How long a write may wait before the client is taken as gone (StalledWriteWatch; STALLED_WRITE_MS). */
  stalledWriteMs: number;
  /** Epoch ms at which this relay stops (RELAY_DEADLINE_MS after it began). */
  deadline: number;
}

/** In-stream: the relay's time is up, the generation is not; the client resumes where it is. */
function deadlineReached(id: string): ApiError {
  return new ApiError(504, "server_error", `This stream reached its time limit. Resume it with GET /v1/chat/completions/${id}/events and the Last-Event-ID of the last event received.`, "relay_deadline");
}

/** Streams the completion as SSE, `buffered` entries first; ends with `data: [DONE]` after `done`. */
export function relaySSE(c: Context, { session, reader, meta, prices, keepAliveMs, resumeGraceMs, stalledWriteMs, deadline }: Relay, buffered: StreamEntry[] = []): Response {
  return streamSSE(c, async (stream) => {
    // Three ways to hear the client leave: the body stream cancelled, (workerd's `enable_request_signal`
    // flag) the incoming request's signal, or a write nobody takes (StalledWriteWatch: workerd reports a
    // failed response write by neither); whichever comes first.
    stream.onAbort(() => session.abandon(resumeGraceMs));
    onClientGone(c.req.raw.signal, () => session.abandon(resumeGraceMs));
    const watch = new StalledWriteWatch(stream, stalledWriteMs);
    // A failed response write ends the request for workerd, which then drops its context (and this relay
    // with it) unless work is pending: the relay is that work, so the watch can still hear the disconnect.
    const relayed = relayEntries(stream, watch);
    waitUntilOf(c)(relayed);
    try {
      await relayed;
    } finally {
      watch.stop();
    }
  });

  async function relayEntries(stream: SSEStreamingApi, watch: StalledWriteWatch): Promise<void> {
    const renderer = meta.kind === "text" ? new TextChunkRenderer(session.id, meta, prices) : new ChunkRenderer(session.id, meta, prices);
    try {
      if (await writeEntries(stream, watch, renderer, session, buffered)) return;
      let lastWrite = Date.now();
      while (!session.abandoned) {
        if (Date.now() >= deadline) {
          await watch.track(stream.writeSSE({ data: JSON.stringify(deadlineReached(session.id).toBody()) }));
          // Like a disconnect: the generation goes on for the grace period, so the client can resume.
          session.abandon(resumeGraceMs);
          return;
        }
        await session.keepLease();
        const entries = await reader.read(Math.max(1, Math.min(deadline - Date.now(), keepAliveMs - (Date.now() - lastWrite))));
        if (session.abandoned) return;
        if (entries.length === 0) {
          if (Date.now() - lastWrite >= keepAliveMs) {
            const failed = await deadEnd(session, reader);
            if (failed) {
              await watch.track(stream.writeSSE({ data: JSON.stringify(failed.toBody()) }));
              await session.finish(null, true); // the generation is over: every slot goes back
              return;
            }
            await watch.track(stream.write(KEEP_ALIVE_COMMENT));
            lastWrite = Date.now();
          }
          continue;
        }
        if (await writeEntries(stream, watch, renderer, session, entries)) return;
        lastWrite = Date.now();
      }
    } catch (err) {
      if (session.abandoned) return;
      const error = relayFailure(err);
      await watch.track(stream.writeSSE({ data: JSON.stringify(error.toBody()) }));
      await session.finish(null, false);
    }
  }
}

/** Writes entries; true when the stream has ended (after `done` or `error`). */
async function writeEntries(stream: SSEStreamingApi, watch: StalledWriteWatch, renderer: ChunkRenderer | TextChunkRenderer, session: CompletionSession, entries: StreamEntry[]): Promise<boolean> {
  for (const entry of entries) {
    for (const data of renderer.render(entry.event)) await watch.track(stream.writeSSE({ data, id: entry.id }));
    if (entry.event.type === "done") {
      await session.finish(entry.event.usage, true);
      return true;
    }
    if (entry.event.type === "error") {
      await session.finish(null, true);
      return true;
    }
  }
  return false;
}

/** Waits for `done` and answers one chat.completion; a node error at any point is the HTTP error. */
export async function collectCompletion({ session, reader, meta, prices, keepAliveMs, deadline }: Relay, signal: AbortSignal | undefined): Promise<Response> {
  const assembler = meta.kind === "text" ? new TextCompletionAssembler(session.id, meta, prices) : new CompletionAssembler(session.id, meta, prices);
  let lastEvent = Date.now();
  // Nobody can resume a non-streaming request: its generation stops at once.
  onClientGone(signal, () => session.abandon(0));
  try {
    for (;;) {
      if (session.abandoned) return new Response(null, { status: 499 });
      if (Date.now() >= deadline) {
        session.abandon(0); // nobody can resume a non-streamed request: stop the generation
        throw new ApiError(504, "server_error", "The completion did not finish within the time limit; use stream: true for long generations.", "timeout");
      }
      await session.keepLease();
      const entries = await reader.read(Math.min(1000, deadline - Date.now()));
      if (entries.length > 0) lastEvent = Date.now();
      else if (Date.now() - lastEvent >= keepAliveMs) {
        lastEvent = Date.now();
        const failed = await deadEnd(session, reader);
        if (failed) {
          await session.finish(null, true);
          throw failed;
        }
      }
      for (const { event } of entries) {
        if (event.type === "delta") assembler.add(event);
        else if (event.type === "done") {
          await session.finish(event.usage, true);
          return Response.json(assembler.finish(event));
        } else if (event.type === "error") {
          await session.finish(null, true);
          throw nodeError(event);
        }
      }
    }
  } catch (err) {
    if (session.abandoned && !(err instanceof ApiError)) return new Response(null, { status: 499 });
    if (!(err instanceof ApiError)) await session.finish(null, false);
    throw relayFailure(err);
  }
}
