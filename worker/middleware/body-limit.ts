/**
 * 413 in OpenAI's shape above MAX_BODY_BYTES (hono/body-limit: the declared Content-Length, or the
 * bytes counted while reading a body sent without one).
 */
import { bodyLimit } from "hono/body-limit";
import { ApiError } from "../../shared/errors.ts";
import { MAX_BODY_BYTES } from "../../shared/limits.ts";
import { errorResponse } from "../error-response.ts";

export const requestBodyLimit = bodyLimit({
  maxSize: MAX_BODY_BYTES,
  onError: () => errorResponse(new ApiError(413, "invalid_request_error", `The request body exceeds ${MAX_BODY_BYTES} bytes.`, "request_too_large")),
});
