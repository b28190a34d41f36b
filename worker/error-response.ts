/** Renders an ApiError as OpenAI's error body with its status (and Retry-After for 429/503). */
import { ApiError } from "../shared/errors.ts";

export function errorResponse(error: ApiError, extraHeaders: Record<string, string> = {}): Response {
  const headers: Record<string, string> = { "content-type": "application/json", ...extraHeaders };
  if (error.retryAfter !== undefined) headers["retry-after"] = String(Math.max(1, Math.ceil(error.retryAfter)));
  return new Response(JSON.stringify(error.toBody()), { status: error.status, headers });
}

export function notFound(message: string, code = "not_found", param: string | null = null): ApiError {
  return new ApiError(404, "not_found_error", message, code, param);
}

/** Anything unexpected becomes a 500 in OpenAI's shape; the message never carries request data. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError(500, "server_error", "The server had an error while processing your request.", "internal_error");
}
