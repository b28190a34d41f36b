/**
 * Reads a choice's output text as it streams and separates it into content and tool calls
 * (tool-call-format.ts), producing OpenAI's streamed `tool_calls` pieces: the call's index, id and
 * name as soon as the name is complete, then its arguments fragment by fragment. Text that only might
 * begin a call is held back until it is known not to; anything that turns out not to be a call is content.
 */
import type { ToolCallDelta } from "../../shared/openai-types.ts";
import { CALL_TAIL, TOOL_CALL_OPEN } from "./tool-call-format.ts";

const HEAD_START = '{"name": "';
const HEAD_MID = '", "arguments": ';
const NAME_CHARS = /^[A-Za-z0-9_-]*/;

export interface ParsedPiece {
  content: string;
  calls: ToolCallDelta[];
}

type State = "text" | "head" | "arguments" | "tail";

export class ToolCallParser {
  private state: State = "text";
  /** Text not yet classified (a possible "<tool_call>" prefix, an incomplete head or tail). */
  private held = "";
  private calls = 0;
  /** Just after a call: the separator's whitespace is dropped until other text comes. */
  private afterCall = false;
  /** Arguments scanner: nesting depth, inside a string, after a backslash, value begun. */
  private depth = 0;
  private inString = false;
  private escaped = false;
  private begun = false;

  constructor(private readonly knownNames: ReadonlySet<string>, private readonly idFor: (index: number) => string) {}

  /** Calls completed or begun so far. */
  get callCount(): number {
    return this.calls;
  }

  push(piece: string): ParsedPiece {
    const out: ParsedPiece = { content: "", calls: [] };
    let text = this.held + piece;
    this.held = "";
    while (text.length > 0) text = this.step(text, out);
    return out;
  }

  /** The choice ended: whatever is held is content (a call cut short keeps what it streamed). */
  finish(): ParsedPiece {
    const out: ParsedPiece = { content: "", calls: [] };
    if (this.state === "text" || this.state === "head") out.content = (this.state === "head" ? TOOL_CALL_OPEN : "") + this.held;
    this.held = "";
    this.state = "text";
    return out;
  }

  /** Consumes a prefix of `text` in the current state; returns what is left. */
  private step(text: string, out: ParsedPiece): string {
    switch (this.state) {
      case "text": {
        if (this.afterCall) {
          const trimmed = text.replace(/^\s+/, "");
          if (trimmed.length === 0) return "";
          text = trimmed;
          this.afterCall = false;
        }
        const at = text.indexOf(TOOL_CALL_OPEN);
        if (at >= 0) {
          out.content += text.slice(0, at);
          this.state = "head";
          return text.slice(at + TOOL_CALL_OPEN.length);
        }
        const keep = partialSuffix(text, TOOL_CALL_OPEN);
        out.content += text.slice(0, text.length - keep);
        this.held = text.slice(text.length - keep);
        return "";
      }
      case "head": {
        const head = readHead(text, this.knownNames);
        if (head === "incomplete") {
          this.held = text;
          return "";
        }
        if (head === "invalid") {
          out.content += TOOL_CALL_OPEN;
          this.state = "text";
          return text;
        }
        out.calls.push({ index: this.calls, id: this.idFor(this.calls), type: "function", function: { name: head.name, arguments: "" } });
        this.calls++;
        this.state = "arguments";
        this.depth = 0;
        this.inString = false;
        this.escaped = false;
        this.begun = false;
        return text.slice(head.length);
      }
      case "arguments": {
        const end = this.scanArguments(text);
        const fragment = end < 0 ? text : text.slice(0, end);
        if (fragment.length > 0) out.calls.push({ index: this.calls - 1, function: { arguments: fragment } });
        if (end < 0) return "";
        this.state = "tail";
        return text.slice(end);
      }
      case "tail": {
        if (text.length < CALL_TAIL.length && CALL_TAIL.startsWith(text)) {
          this.held = text;
          return "";
        }
        this.state = "text";
        this.afterCall = true;
        return text.startsWith(CALL_TAIL) ? text.slice(CALL_TAIL.length) : text;
      }
    }
  }

  /** Index just past the arguments' JSON value within `text`, or -1 if it continues beyond it. */
  private scanArguments(text: string): number {
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === "\\") this.escaped = true;
        else if (c === '"') this.inString = false;
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === "{" || c === "[") {
        this.depth++;
        this.begun = true;
      } else if (c === "}" || c === "]") {
        this.depth--;
        if (this.begun && this.depth === 0) return i + 1;
      }
    }
    return -1;
  }
}

/** The head `{"name": "<name>", "arguments": ` at the start of `text`: its name and length, or why not. */
function readHead(text: string, known: ReadonlySet<string>): { name: string; length: number } | "incomplete" | "invalid" {
  if (text.length < HEAD_START.length) return HEAD_START.startsWith(text) ? "incomplete" : "invalid";
  if (!text.startsWith(HEAD_START)) return "invalid";
  const name = NAME_CHARS.exec(text.slice(HEAD_START.length))![0];
  const rest = text.slice(HEAD_START.length + name.length);
  if (rest.length === 0) return "incomplete";
  if (rest.length < HEAD_MID.length) return HEAD_MID.startsWith(rest) ? "incomplete" : "invalid";
  if (!rest.startsWith(HEAD_MID) || !known.has(name)) return "invalid";
  return { name, length: HEAD_START.length + name.length + HEAD_MID.length };
}

/** Length of the longest suffix of `text` that is a proper prefix of `marker`. */
function partialSuffix(text: string, marker: string): number {
  for (let n = Math.min(text.length, marker.length - 1); n > 0; n--) {
    if (marker.startsWith(text.slice(text.length - n))) return n;
  }
  return 0;
}
