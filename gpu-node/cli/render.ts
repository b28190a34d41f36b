/**
 * `npm run -s render -- '<messages JSON>'` prints {"text": …, "ids": […]}: the Phi-4 prompt the messages
 * become, validated by the same rules as the API. A request object (`{"messages": …, "tools": …}`) renders
 * with its tools (docs/tool-calling.md).
 */
import { parseChatRequest } from "../../shared/request-schema.ts";
import { SERVED_MODEL_ID } from "../../shared/limits.ts";
import { renderChat } from "../tokenizer/chat-format.ts";
import { phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";
import { withToolsRendered } from "../tools/tool-prompt.ts";
import { failUsage } from "./cli-error.ts";

const args = process.argv.slice(2);
if (args.length !== 1) failUsage("usage: npm run -s render -- '<messages JSON array>' (exactly one argument)");
let messages: unknown;
try {
  messages = JSON.parse(args[0]);
} catch (e) {
  failUsage(`messages are not valid JSON: ${(e as Error).message}`);
}
const body = Array.isArray(messages) ? { messages } : { ...(messages as object) };
const parsed = parseChatRequest({ model: SERVED_MODEL_ID, ...body });
if (!parsed.ok) failUsage(parsed.error.message);
const { tools, toolChoice } = parsed.request;
const { text, ids } = renderChat(phi4Tokenizer(), withToolsRendered(parsed.request.messages, tools, toolChoice));
process.stdout.write(`${JSON.stringify({ text, ids })}\n`);
