/**
 * Jobs this node refuses, as the contract's `error` events (OpenAI's error shape, relayed by the Worker).
 * A refused job fails for good (BullMQ UnrecoverableError): retrying it elsewhere would fail the same way.
 */
import { ProtocolVersionError, type StreamEvent } from "../../shared/protocol.ts";

export type ErrorEvent = Extract<StreamEvent, { type: "error" }>;

/** parseChatJob's failure: a job from a Worker of another version, or a payload outside the schema. */
export function malformedJobError(err: unknown): ErrorEvent {
  if (err instanceof ProtocolVersionError) {
    return { type: "error", status: 500, errorType: "server_error", code: "protocol_mismatch", message: err.message, param: null };
  }
  return { type: "error", status: 400, errorType: "invalid_request_error", code: "invalid_job", message: (err as Error).message, param: null };
}

/** A job whose id is not the one it was queued under. */
export function jobIdMismatchError(queuedAs: string, claimed: string): ErrorEvent {
  return {
    type: "error", status: 400, errorType: "invalid_request_error", code: "invalid_job",
    message: `malformed job: id: the job was queued as ${JSON.stringify(queuedAs)} but names itself ${JSON.stringify(claimed)}`, param: null,
  };
}

/** Null when this node serves the model, else OpenAI's model_not_found error (worded as the Worker words it). */
export function unknownModelError(model: string, served: string): ErrorEvent | null {
  if (model === served) return null;
  return {
    type: "error", status: 404, errorType: "invalid_request_error", code: "model_not_found",
    message: `The model '${model.slice(0, 200)}' does not exist or you do not have access to it.`,
    param: "model",
  };
}

/**
 * A job that nodes started `starts` times without finishing it (each start ended with the engine or the
 * node failing): most likely it is what crashes them, so it is not tried again.
 */
export function crashingJobError(starts: number): ErrorEvent {
  return {
    type: "error", status: 500, errorType: "server_error", code: "request_crashed_nodes",
    message: `The request was started ${starts} times and each time the GPU node serving it failed; it will not be retried.`,
    param: null,
  };
}

/** A job that waited in the queue past the expiry before any node started it. */
export function expiredJobError(waitedSeconds: number): ErrorEvent {
  return {
    type: "error", status: 503, errorType: "service_unavailable", code: "queue_timeout",
    message: `The request waited ${Math.round(waitedSeconds)} s in the queue before a GPU node could take it and was dropped; please retry.`,
    param: null,
  };
}

/**
 * What a failed job keeps in Redis for inspection: everything but the prompt (messages and stop strings
 * are the user's text; failed jobs outlive the request by an hour).
 */
export function withoutPrompt(data: unknown): Record<string, unknown> {
  if (typeof data !== "object" || data === null) return {};
  const { request, ...rest } = data as Record<string, unknown>;
  if (typeof request !== "object" || request === null) return rest;
  const { messages, stop, ...params } = request as Record<string, unknown>;
  return { ...rest, request: { ...params, messages: Array.isArray(messages) ? `[${messages.length} messages removed]` : "[removed]" } };
}

/** Redis lost the request's job and stream while it ran (a restart without persistence). */
export function requestStateLostError(): ErrorEvent {
  return {
    type: "error", status: 503, errorType: "service_unavailable", code: "request_state_lost",
    message: "The request's state was lost by the queue (Redis restarted) while it was generating; please retry.",
    param: null,
  };
}
