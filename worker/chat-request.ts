/**
 * Reading a chat request off the wire: content type, JSON, the shared schema, the served model. The
 * size limit (413) is the body-limit middleware's, before this reads anything.
 */
import { ApiError } from "../shared/errors.ts";
import { parseChatRequest, type ChatRequest } from "../shared/request-schema.ts";

export async function readChatRequest(request: Request, servedModel: string): Promise<ChatRequest> {
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
  const parsed = parseChatRequest(body);
  if (!parsed.ok) throw parsed.error;
  if (parsed.request.model !== servedModel) {
    throw new ApiError(404, "invalid_request_error", `The model '${parsed.request.model}' does not exist or you do not have access to it.`, "model_not_found", "model");
  }
  return parsed.request;
}

/** The edge's token estimate for admission: ~3 UTF-8 bytes per token, plus per-message framing. */
export function estimatePromptTokens(request: ChatRequest): number {
  const encoder = new TextEncoder();
  let bytes = 0;
  for (const m of request.messages) bytes += encoder.encode(m.content).byteLength + 12;
  return Math.ceil(bytes / 3);
}
