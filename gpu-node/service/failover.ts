/**
 * Failover: what a request's stream already holds when a node picks its job up.
 *
 * A job comes back to the queue when its node died (BullMQ's stalled check), or was handed back by a
 * draining node. The stream is then a prefix of the request's events (stream-publisher.ts guarantees
 * that), and this node continues it:
 * - each choice's published tokens are the concatenation of its deltas' `tokens`; a delta carrying a
 *   finishReason closes its choice. The engine replays them (re-prefill, detokenizer, stop matcher and
 *   penalties) without sampling or publishing them again, then samples from the next position;
 * - the seed is the one the first node announced in `start` (also when the client gave none), and the
 *   sampler's randomness is counter-based (seed, choice, position): the continuation is the text an
 *   uninterrupted run would have produced;
 * - the stream keeps exactly one `start`: the resuming node does not publish the engine's second one
 *   (the Worker renders `start` as the role chunk, which a client must see once);
 * - a stream that already ends (`done`/`error`) needs no work: the job is settled as that event says.
 */
import { choiceCount } from "../../shared/request-schema.ts";
import type { RedisConnection } from "./redis-connection.ts";
import type { FinishReason } from "../../shared/openai-types.ts";
import { decodeStreamEvent, type StreamEvent } from "../../shared/protocol.ts";
import type { EngineSubmission } from "../engine/llm-engine.ts";

type StartEvent = Extract<StreamEvent, { type: "start" }>;
type EndEvent = Extract<StreamEvent, { type: "done" } | { type: "error" }>;

export interface PublishedProgress {
  /** Entries in the stream. */
  entries: number;
  start: StartEvent | null;
  /** Tokens each choice has published, by choice index. */
  tokens: number[][];
  finishReasons: Array<FinishReason | null>;
  /** The stream's last event when it already ended. */
  end: EndEvent | null;
}

const PAGE = 1000;

/** Reads a request's stream from the beginning (paged XRANGE). */
export async function readPublished(redis: RedisConnection, streamKey: string): Promise<PublishedProgress> {
  const progress: PublishedProgress = { entries: 0, start: null, tokens: [], finishReasons: [], end: null };
  let from = "-";
  for (;;) {
    const page = (await redis.xrange(streamKey, from, "+", "COUNT", PAGE)) as Array<[string, string[]]>;
    for (const [, fields] of page) addEvent(progress, decodeStreamEvent(fields));
    progress.entries += page.length;
    if (page.length < PAGE) return progress;
    from = `(${page[page.length - 1][0]}`;
  }
}

function addEvent(progress: PublishedProgress, event: StreamEvent): void {
  switch (event.type) {
    case "start":
      progress.start ??= event;
      break;
    case "delta": {
      while (progress.tokens.length <= event.index) {
        progress.tokens.push([]);
        progress.finishReasons.push(null);
      }
      const tokens = progress.tokens[event.index];
      for (const t of event.tokens) tokens.push(t);
      if (event.finishReason !== undefined) progress.finishReasons[event.index] = event.finishReason;
      break;
    }
    case "done":
    case "error":
      progress.end = event;
      break;
  }
}

/** True when a previous node already published something for this request. */
export function isResumption(progress: PublishedProgress): boolean {
  return progress.entries > 0;
}

/** The engine submission that continues the stream where it stops. */
export function resumeSubmission(id: string, request: EngineSubmission["request"], progress: PublishedProgress): EngineSubmission {
  if (progress.start === null) return { id, request };
  const n = choiceCount(request);
  const tokens: number[][] = [];
  const finishReasons: Array<FinishReason | null> = [];
  for (let i = 0; i < n; i++) {
    tokens.push(progress.tokens[i] ?? []);
    finishReasons.push(progress.finishReasons[i] ?? null);
  }
  return { id, request: { ...request, seed: progress.start.seed }, resume: { tokens, finishReasons } };
}
