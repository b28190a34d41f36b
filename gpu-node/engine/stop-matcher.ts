/**
 * `stop` strings on the streamed text, across token boundaries.
 *
 * The result is exactly "the text cut before the earliest occurrence of any stop string": text that
 * might still become (part of) a stop string is held back until decided, a stop string is never
 * emitted, and when several could match, the one that starts first wins, even if a later-starting one
 * completes first (then the matcher waits for the earlier candidate to be decided).
 * Strings are compared in UTF-16 code units; the decoder pushes whole characters, and a held-back
 * suffix always starts where a stop string starts, so a surrogate pair is never split.
 */
export class StopMatcher {
  private readonly stops: string[];
  private held = "";
  private done = false;

  constructor(stops: string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** True once a stop string has been found (by `push`, or by `flush` at the end of generation). */
  get stopped(): boolean {
    return this.done;
  }

  /** Feeds new text; returns what may be shown now, and whether a stop string ended the output. */
  push(text: string): { emit: string; stopped: boolean } {
    if (this.done) return { emit: "", stopped: true };
    const buffer = this.held + text;
    const match = this.earliestMatch(buffer);
    // Anything that could still grow into a stop string starting before `match` must be decided first.
    const open = this.earliestOpenPrefix(buffer, match === -1 ? buffer.length : match);
    if (match !== -1 && open === -1) {
      this.done = true;
      this.held = "";
      return { emit: buffer.slice(0, match), stopped: true };
    }
    const keepFrom = open === -1 ? buffer.length : open;
    this.held = buffer.slice(keepFrom);
    return { emit: buffer.slice(0, keepFrom), stopped: false };
  }

  /** End of generation: releases the held text, cut before a stop string if it holds a complete one. */
  flush(): string {
    if (this.done) return "";
    const match = this.earliestMatch(this.held);
    const out = match === -1 ? this.held : this.held.slice(0, match);
    if (match !== -1) this.done = true;
    this.held = "";
    return out;
  }

  /** Start of the earliest complete stop string in `text`, or -1. */
  private earliestMatch(text: string): number {
    let best = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop);
      if (at !== -1 && (best === -1 || at < best)) best = at;
    }
    return best;
  }

  /** Earliest i < limit such that text[i..] is a proper prefix of some stop string (could still complete), or -1. */
  private earliestOpenPrefix(text: string, limit: number): number {
    let longest = 0;
    for (const stop of this.stops) if (stop.length > longest) longest = stop.length;
    for (let i = Math.max(0, text.length - longest + 1); i < limit; i++) {
      for (const stop of this.stops) {
        const rest = text.length - i;
        if (rest < stop.length && stop.startsWith(text.slice(i))) return i;
      }
    }
    return -1;
  }
}
