/**
 * Reading a chat request off the wire: content type, JSON, the shared schema, the served model. The
 * size limit (413) is the body-limit middleware's, before this reads anything.
 */
import { ApiError } from "../shared/errors.ts";
import { choiceCount, parseChatRequest, type ChatRequest, type ParseResult } from "../shared/request-schema.ts";

/** Reads a chat request, or (with `parseCompletionRequest`) a legacy completions request: both become a ChatRequest. */
export async function readChatRequest(request: Request, servedModel: string, parse: (body: unknown) => ParseResult = parseChatRequest): Promise<ChatRequest> {
  const contentType = request.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(contentType)) {
    throw new ApiError(415, "invalid_request_error", "The request body must be JSON ('Content-Type: application/json').", "unsupported_media_type");
  }
  const bytes = new Uint8Array(await request.arrayBuffer());
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new ApiError(400, "invalid_request_error", "We could not parse the JSON body of your request.", "invalid_json");
  }
  const parsed = parse(body);
  if (!parsed.ok) throw parsed.error;
  if (parsed.request.model !== servedModel) {
    throw new ApiError(404, "invalid_request_error", `The model '${parsed.request.model}' does not exist or you do not have access to it.`, "model_not_found", "model");
  }
  return parsed.request;
}

/**
 * The edge's token estimate for admission: ~3 UTF-8 bytes per token, plus per-message framing, the
 * tools' descriptions and earlier calls; a legacy prompt of token ids counts exactly.
 */
export function estimatePromptTokens(request: ChatRequest): number {
  const encoder = new TextEncoder();
  let bytes = 0;
  let tokens = 0;
  for (const m of request.messages) {
    bytes += encoder.encode(m.content).byteLength + 12;
    if (m.tool_calls) bytes += encoder.encode(JSON.stringify(m.tool_calls)).byteLength;
  }
  if (request.tools.length > 0) bytes += encoder.encode(JSON.stringify(request.tools)).byteLength + 600;
  for (const p of request.prompts ?? []) {
    if (typeof p === "string") bytes += encoder.encode(p).byteLength;
    else tokens += p.length;
  }
  return Math.ceil(bytes / 3) + tokens;
}

/** What admission charges against tokens per minute: the prompt estimate plus the most each choice may generate. */
export function admissionTokens(request: ChatRequest, contextLength: number): number {
  const prompt = estimatePromptTokens(request);
  const perChoice = request.maxTokens ?? Math.max(0, contextLength - prompt);
  return prompt + choiceCount(request) * perChoice;
}
