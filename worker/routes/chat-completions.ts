/**
 * POST /v1/chat/completions (and /v1/openai/chat/completions): validate, admit, enqueue, relay.
 * Nothing reaches the queue before the body is valid and the key is within its limits.
 */
import type { Context } from "hono";
import { CONTEXT_LENGTH } from "../../shared/limits.ts";
import { newCompletionId, PROTOCOL_VERSION, type ChatJob } from "../../shared/protocol.ts";
import type { ChatRequest } from "../../shared/request-schema.ts";
import { redisKeys } from "../../shared/redis-keys.ts";
import { sha256Hex } from "../api-key.ts";
import type { AppEnv } from "../app-env.ts";
import { estimatePromptTokens, readChatRequest } from "../chat-request.ts";
import { admitAndEnqueue, type AdmissionTicket } from "../admission.ts";
import type { CompletionMeta } from "../completion-meta.ts";
import { CompletionSession } from "../completion-session.ts";
import type { Admission } from "../rate-limit.ts";
import { asServiceError, closeRedis, openRedis, type RedisClient } from "../redis.ts";
import { reviveGatewayError, type RedisGateway } from "../redis-gateway.ts";
import { collectCompletion, holdForFirstToken, relaySSE } from "../relay.ts";
import { StreamReader } from "../stream-reader.ts";
import { waitUntilOf } from "../wait-until.ts";

/** What admission charges against tokens per minute: the prompt estimate plus the most each choice may generate. */
export function admissionTokens(request: ChatRequest): number {
  const prompt = estimatePromptTokens(request);
  const perChoice = request.maxTokens ?? Math.max(0, CONTEXT_LENGTH - prompt);
  return prompt + request.n * perChoice;
}

export async function chatCompletions(c: Context<AppEnv>): Promise<Response> {
  const config = c.get("config");
  const caller = c.get("caller");
  const request = await readChatRequest(c.req.raw, config.modelId);
  const keys = redisKeys(config.redisPrefix);
  const id = newCompletionId();
  const created = Math.floor(Date.now() / 1000);
  const job: ChatJob = {
    protocol: PROTOCOL_VERSION,
    id,
    created,
    enqueuedAt: Date.now(),
    request: { ...request, user: request.user === null ? null : await sha256Hex(request.user) },
  };
  const meta: CompletionMeta = {
    ownerKeyHash: caller.keyHash,
    model: config.modelId,
    created,
    n: request.n,
    logprobs: request.logprobs,
    includeUsage: request.includeUsage,
  };

  const ticket: AdmissionTicket = {
    keyHash: caller.keyHash, limits: caller.limits, job, meta,
    estimatedTokens: admissionTokens(request), maxQueueDepth: config.maxQueueDepth,
  };
  let redis: RedisClient;
  let admission: Admission;
  if (c.env.REDIS_GATEWAY) {
    // Experiment: admission on the gateway's long-lived connection; the relay still needs its own.
    const gateway = c.env.REDIS_GATEWAY.get(c.env.REDIS_GATEWAY.idFromName("gateway")) as unknown as RedisGateway;
    const [outcome, relayRedis] = await Promise.all([
      gateway.admitAndEnqueue(config.redisUrl, config.redisPrefix, ticket),
      openRedis(config.redisUrl).catch((err: unknown) => err as Error),
    ]);
    if (relayRedis instanceof Error) {
      // Admitted but unservable: take the job back rather than leave a node computing for no one.
      if (outcome.ok) await gateway.withdraw(config.redisUrl, config.redisPrefix, id, caller.keyHash, outcome.admission).catch(() => {});
      throw asServiceError(relayRedis);
    }
    if (!outcome.ok) {
      await closeRedis(relayRedis);
      throw reviveGatewayError(outcome.error);
    }
    redis = relayRedis;
    admission = outcome.admission;
  } else {
    redis = await openRedis(config.redisUrl);
    try {
      admission = await admitAndEnqueue(redis, keys, ticket);
    } catch (err) {
      await closeRedis(redis);
      throw asServiceError(err);
    }
  }

  const session = new CompletionSession(redis, keys, id, config.redisUrl, { keyHash: caller.keyHash, admission }, waitUntilOf(c));
  const reader = new StreamReader(redis, keys.stream(id));
  if (!request.stream) {
    const response = await collectCompletion(session, reader, meta, config.prices, c.req.raw.signal, config.sseKeepAliveMs);
    response.headers.set("x-request-id", id);
    return response;
  }

  let held;
  try {
    held = await holdForFirstToken(reader, config.sseHoldMs);
  } catch (err) {
    await session.finish(null, false);
    throw asServiceError(err);
  }
  if (held.error) {
    await session.finish(null, true);
    throw held.error;
  }
  return relaySSE(c, session, reader, meta, config.prices, held.buffered, config.sseKeepAliveMs, { "x-request-id": id });
}
