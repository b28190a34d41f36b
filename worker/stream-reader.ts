/**
 * Reads one request's Redis Stream from a cursor with blocking XREAD, decoding contract events.
 * Each entry keeps its stream id: it becomes the SSE `id:` so `Last-Event-ID` can resume from it.
 */
import { decodeStreamEvent, type StreamEvent } from "../shared/protocol.ts";
import { COMMAND_TIMEOUT_MS, type RedisClient } from "./redis.ts";

export interface StreamEntry {
  id: string;
  event: StreamEvent;
}

/** Stream entry ids are "<ms>-<seq>"; "0-0" reads from the beginning. */
export const STREAM_START = "0-0";
const ENTRY_ID = /^[0-9]{1,20}-[0-9]{1,20}$/;

export function isStreamEntryId(value: string): boolean {
  return ENTRY_ID.test(value);
}

/** Each blocking read waits at most this long, well inside the per-command timeout. */
export const MAX_BLOCK_MS = Math.min(1000, COMMAND_TIMEOUT_MS - 1000);

export class StreamReader {
  private cursor: string;

  constructor(private readonly redis: RedisClient, private readonly streamKey: string, from: string = STREAM_START) {
    this.cursor = from;
  }

  get position(): string {
    return this.cursor;
  }

  /** The entries after the cursor, waiting up to blockMs for the first one ([] on timeout). */
  async read(blockMs: number): Promise<StreamEntry[]> {
    const block = Math.max(1, Math.min(MAX_BLOCK_MS, Math.round(blockMs)));
    const reply = await this.redis.xread("COUNT", 512, "BLOCK", block, "STREAMS", this.streamKey, this.cursor);
    if (reply === null) return [];
    const raw = reply[0][1];
    const entries: StreamEntry[] = new Array(raw.length);
    for (let i = 0; i < raw.length; i++) entries[i] = { id: raw[i][0], event: decodeStreamEvent(raw[i][1]) };
    if (raw.length > 0) this.cursor = raw[raw.length - 1][0];
    return entries;
  }

  /** The stream's last entry, if any (to tell a finished stream from a quiet one on resume). */
  last(): Promise<StreamEntry | null> {
    return lastEntry(this.redis, this.streamKey);
  }
}

export async function lastEntry(redis: RedisClient, streamKey: string): Promise<StreamEntry | null> {
  const reply = await redis.xrevrange(streamKey, "+", "-", "COUNT", 1);
  if (reply.length === 0) return null;
  return { id: reply[0][0], event: decodeStreamEvent(reply[0][1]) };
}

/** Orders two stream ids numerically (string order is wrong across digit counts). */
export function compareEntryIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : as < bs ? -1 : 1;
}
