/**
 * Hears a streaming client that left without the runtime saying so. When workerd's write of a response
 * chunk to a vanished client fails ("Network connection lost"), it ends the request with that error:
 * `request.signal` is not raised (only a request cancelled mid-flight raises it) and the JS body stream
 * is never cancelled; it is simply no longer read. The relay's next write then waits forever, and
 * without a pending waitUntil workerd drops the request's context with it. Which of the two ways a
 * disconnect surfaces is a race, so some streams were never cancelled. A write that nobody takes for
 * `stallMs` (STALLED_WRITE_MS) is therefore taken as the disconnect: the stream is aborted, exactly as
 * when the client cancels the body (its onAbort starts the grace period, and the pending write returns).
 */
import type { SSEStreamingApi } from "hono/streaming";

export class StalledWriteWatch {
  /** When the write in progress began; 0 while none is. */
  private since = 0;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(stream: SSEStreamingApi, stallMs: number) {
    // One timer per relay (not one per write): it looks a few times per stall interval.
    this.timer = setInterval(() => {
      if (this.since !== 0 && Date.now() - this.since >= stallMs) stream.abort();
    }, Math.max(25, Math.floor(stallMs / 4)));
  }

  /** Waits for one write to the client, under the watch. */
  async track(write: Promise<unknown>): Promise<void> {
    this.since = Date.now();
    try {
      await write;
    } finally {
      this.since = 0;
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
