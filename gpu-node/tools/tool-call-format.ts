/**
 * How a function call looks in Phi-4's text (Phi-4 has no native tool template; docs/tool-calling.md
 * documents this one): one call per line,
 *   <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>
 * The same text is rendered into prompts (history), enforced by the grammar, and parsed from output.
 */

export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";
/** Between two calls of one turn. */
export const CALL_SEPARATOR = "\n";

/** Everything of a call before its arguments: fixed, so the grammar can force it and the parser read it. */
export function callHead(name: string): string {
  return `${TOOL_CALL_OPEN}{"name": ${JSON.stringify(name)}, "arguments": `;
}

export const CALL_TAIL = `}${TOOL_CALL_CLOSE}`;

export function renderCall(name: string, argumentsJson: string): string {
  return callHead(name) + argumentsJson + CALL_TAIL;
}
