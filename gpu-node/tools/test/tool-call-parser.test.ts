import { describe, expect, it } from "vitest";
import type { ToolCallDelta } from "../../../shared/openai-types.ts";
import { renderCall } from "../tool-call-format.ts";
import { ToolCallParser } from "../tool-call-parser.ts";

const known = new Set(["get_weather", "get_time"]);

/** Feeds text in pieces of `size` characters; returns the content and the calls reassembled from their deltas. */
function parseInPieces(text: string, size: number) {
  const parser = new ToolCallParser(known, (i) => `call_${i}`);
  let content = "";
  const deltas: ToolCallDelta[] = [];
  for (let i = 0; i < text.length; i += size) {
    const r = parser.push(text.slice(i, i + size));
    content += r.content;
    deltas.push(...r.calls);
  }
  const end = parser.finish();
  content += end.content;
  const calls: Array<{ id: string; name: string; arguments: string }> = [];
  for (const d of deltas) {
    if (d.id !== undefined) {
      expect(d.index).toBe(calls.length);
      calls.push({ id: d.id, name: d.function.name!, arguments: d.function.arguments });
    } else {
      expect(d.function.name).toBeUndefined();
      calls[d.index].arguments += d.function.arguments;
    }
  }
  return { content, calls, deltas, count: parser.callCount };
}

describe("tool call parser", () => {
  const two = `${renderCall("get_weather", '{"city": "Oslo", "note": "a } or </tool_call> inside"}')}\n${renderCall("get_time", '{"zone": "UTC", "nested": {"a": [1, {"b": 2}]}}')}`;

  it("separates calls from content however the text is split", () => {
    for (const size of [1, 2, 3, 7, 1000]) {
      const r = parseInPieces(two, size);
      expect(r.content).toBe("");
      expect(r.count).toBe(2);
      expect(r.calls).toEqual([
        { id: "call_0", name: "get_weather", arguments: '{"city": "Oslo", "note": "a } or </tool_call> inside"}' },
        { id: "call_1", name: "get_time", arguments: '{"zone": "UTC", "nested": {"a": [1, {"b": 2}]}}' },
      ]);
    }
  });

  it("streams the header first, then argument fragments", () => {
    const r = parseInPieces(renderCall("get_time", '{"zone": "UTC"}'), 4);
    expect(r.deltas[0]).toEqual({ index: 0, id: "call_0", type: "function", function: { name: "get_time", arguments: "" } });
    expect(r.deltas.length).toBeGreaterThan(2);
  });

  it("keeps text before a call as content, and text that only looked like a call", () => {
    const r = parseInPieces(`Let me check.${renderCall("get_weather", "{}")}`, 3);
    expect(r.content).toBe("Let me check.");
    expect(r.calls).toHaveLength(1);
    expect(parseInPieces("a <tool_cal b < c <tool_call>{\"nope\": 1}", 2)).toMatchObject({ content: "a <tool_cal b < c <tool_call>{\"nope\": 1}", count: 0 });
    expect(parseInPieces(`${"<tool_call>"}{"name": "unknown_fn", "arguments": {}}`, 5).count).toBe(0);
    expect(parseInPieces("ends with <tool", 4).content).toBe("ends with <tool");
  });
});
