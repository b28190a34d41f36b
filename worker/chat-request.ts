/**
 * Reading a chat request off the wire: content type, size (413 above MAX_BODY_BYTES, counted while
 * reading so a lying Content-Length cannot slip through), JSON, the shared schema, the served model.
 */
import { ApiError } from "../shared/errors.ts";
import { MAX_BODY_BYTES } from "../shared/limits.ts";
import { parseChatRequest, type ChatRequest } from "../shared/request-schema.ts";

function tooLarge(): ApiError {
  return new ApiError(413, "invalid_request_error", `The request body exceeds ${MAX_BODY_BYTES} bytes.`, "request_too_large");
}

async function readBody(request: Request): Promise<Uint8Array> {
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) throw tooLarge();
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_BODY_BYTES) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    parts.push(value);
  }
  const body = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) { body.set(part, offset); offset += part.byteLength; }
  return body;
}

export async function readChatRequest(request: Request, servedModel: string): Promise<ChatRequest> {
  const contentType = request.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(contentType)) {
    throw new ApiError(415, "invalid_request_error", "The request body must be JSON ('Content-Type: application/json').", "unsupported_media_type");
  }
  const bytes = await readBody(request);
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
