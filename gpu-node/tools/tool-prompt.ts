/**
 * The tools section of the system prompt, and how earlier turns with calls and results are written
 * back (docs/tool-calling.md shows the exact text). The tools go at the end of the system message
 * (one is created when the request has none), so a shared system prompt stays a shared prefix.
 */
import type { ChatMessage, ToolChoice, ToolFunction } from "../../shared/openai-types.ts";
import { CALL_SEPARATOR, renderCall, TOOL_CALL_OPEN } from "./tool-call-format.ts";

export function toolsSection(tools: ReadonlyArray<ToolFunction>, choice: ToolChoice): string {
  const lines = tools.map((t) => JSON.stringify({ name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.parameters }));
  let rule = "Call a function only when it helps to answer.";
  if (choice === "required") rule = "You must call at least one of these functions now.";
  else if (typeof choice === "object") rule = `You must call the function ${JSON.stringify(choice.name)} now.`;
  return [
    "# Tools",
    "",
    "You can call these functions. Each line describes one: its name, what it does and its parameters as a JSON Schema.",
    "<tools>",
    ...lines,
    "</tools>",
    "",
    "To call functions, answer with one line per call and nothing else:",
    `${TOOL_CALL_OPEN}{"name": "<function name>", "arguments": <the arguments as a JSON object>}</tool_call>`,
    "The results come back in messages with the role tool, in the order of the calls.",
    rule,
  ].join("\n");
}

/** The messages as the model reads them: tools in the system message, calls as text, results as tool turns. */
export function withToolsRendered(messages: ReadonlyArray<ChatMessage>, tools: ReadonlyArray<ToolFunction>, choice: ToolChoice): ChatMessage[] {
  const out: ChatMessage[] = messages.map((m) => {
    if (m.role !== "assistant" || !m.tool_calls?.length) return m;
    const calls = m.tool_calls.map((c) => renderCall(c.function.name, c.function.arguments)).join(CALL_SEPARATOR);
    return { role: "assistant", content: m.content ? `${m.content}${CALL_SEPARATOR}${calls}` : calls };
  });
  if (tools.length === 0) return out;
  const section = toolsSection(tools, choice);
  const system = out.findIndex((m) => m.role === "system");
  if (system >= 0) out[system] = { ...out[system], content: `${out[system].content}\n\n${section}` };
  else out.unshift({ role: "system", content: section });
  return out;
}
