import { describe, expect, it } from "vitest";
import type { ChatMessage, ToolFunction } from "../../../shared/openai-types.ts";
import { renderChat } from "../../tokenizer/chat-format.ts";
import { phi4Tokenizer } from "../../tokenizer/phi4-tokenizer.ts";
import { toolsSection, withToolsRendered } from "../tool-prompt.ts";

const tools: ToolFunction[] = [
  { name: "get_weather", description: "Current weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }, strict: false },
];

describe("tools in the prompt", () => {
  it("renders the documented text: tools at the end of the system message, calls and results in the history", () => {
    const messages: ChatMessage[] = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Weather in Oslo?" },
      { role: "assistant", content: "", tool_calls: [{ id: "call_a", type: "function", function: { name: "get_weather", arguments: '{"city": "Oslo"}' } }] },
      { role: "tool", content: "3C", tool_call_id: "call_a" },
    ];
    const text = renderChat(phi4Tokenizer(), withToolsRendered(messages, tools, "auto")).text;
    expect(text).toBe(
      "<|im_start|>system<|im_sep|>Be brief.\n\n# Tools\n\n" +
      "You can call these functions. Each line describes one: its name, what it does and its parameters as a JSON Schema.\n" +
      "<tools>\n" +
      '{"name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}\n' +
      "</tools>\n\n" +
      "To call functions, answer with one line per call and nothing else:\n" +
      '<tool_call>{"name": "<function name>", "arguments": <the arguments as a JSON object>}</tool_call>\n' +
      "The results come back in messages with the role tool, in the order of the calls.\n" +
      "Call a function only when it helps to answer.<|im_end|>" +
      "<|im_start|>user<|im_sep|>Weather in Oslo?<|im_end|>" +
      '<|im_start|>assistant<|im_sep|><tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call><|im_end|>' +
      "<|im_start|>tool<|im_sep|>3C<|im_end|>" +
      "<|im_start|>assistant<|im_sep|>",
    );
  });

  it("creates a system message when there is none, and states forced choices", () => {
    const out = withToolsRendered([{ role: "user", content: "hi" }], tools, "required");
    expect(out[0].role).toBe("system");
    expect(out[0].content).toMatch(/You must call at least one of these functions now\.$/);
    expect(toolsSection(tools, { name: "get_weather" })).toMatch(/You must call the function "get_weather" now\.$/);
    expect(withToolsRendered([{ role: "user", content: "hi" }], [], "none")).toEqual([{ role: "user", content: "hi" }]);
  });
});
