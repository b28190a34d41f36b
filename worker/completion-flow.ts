/**
 * The life of a validated request at the edge, the same for chat and legacy completions: check its
 * output budget, hash the end-user id, admit (rate limits, queue depth, a live node) and enqueue in one
 * step, then relay the stream as SSE or collect it into one response. Nothing reaches the queue before
 * this point.
 */
import type { Context } from "hono";
import { CONTEXT_LENGTH } from "../shared/limits.ts";
import { outputBudgetError } from "../shared/output-budget.ts";
import { newCompletionId, PROTOCOL_VERSION, type ChatJob } from "../shared/protocol.ts";
import { choiceCount, type ChatRequest } from "../shared/request-schema.ts";
import { redisKeys } from "../shared/redis-keys.ts";
import { admitAndEnqueue } from "./admission.ts";
import { prefixCacheSalt } from "./queue.ts";
import { sha256Hex } from "./api-key.ts";
import type { AppEnv } from "./app-env.ts";
import { admissionTokens, estimatePromptTokens } from "./chat-request.ts";
import type { CompletionMeta } from "./completion-meta.ts";
import { CompletionSession } from "./completion-session.ts";
import { asServiceError, closeRedis, openRedis } from "./redis.ts";
import { collectCompletion, holdForFirstToken, relaySSE, type Relay } from "./relay.ts";
import { StreamReader } from "./stream-reader.ts";
import { waitUntilOf } from "./wait-until.ts";

export async function serveCompletion(c: Context<AppEnv>, request: ChatRequest, kind: "chat" | "text"): Promise<Response> {
  const config = c.get("config");
  const caller = c.get("caller");
  const choices = choiceCount(request);
  const overBudget = outputBudgetError({ ...request, n: choices }, estimatePromptTokens(request));
  if (overBudget) throw overBudget;
  const keys = redisKeys(config.redisPrefix);
  const id = newCompletionId(kind === "chat" ? "chatcmpl" : "cmpl");
  const created = Math.floor(Date.now() / 1000);
  const job: ChatJob = {
    protocol: PROTOCOL_VERSION,
    id,
    created,
    enqueuedAt: Date.now(),
    request: { ...request, user: request.user === null ? null : await sha256Hex(request.user) },
    cacheSalt: await prefixCacheSalt(caller.keyHash, caller.cacheGroup),
  };
  const meta: CompletionMeta = {
    ownerKeyHash: caller.keyHash,
    model: config.modelId,
    created,
    n: choices,
    logprobs: request.logprobs,
    includeUsage: request.includeUsage,
    ...(kind === "text" ? { kind } : {}),
  };

  const redis = await openRedis(config.redisUrl);
  let admission;
  try {
    admission = await admitAndEnqueue(redis, keys, {
      keyHash: caller.keyHash, limits: caller.limits, job, meta,
      estimatedTokens: admissionTokens(request, CONTEXT_LENGTH), maxQueueDepth: config.maxQueueDepth, leaseMs: config.leaseMs,
    });
  } catch (err) {
    await closeRedis(redis);
    throw asServiceError(err);
  }

  const session = new CompletionSession({
    redis, keys, id, redisUrl: config.redisUrl, generation: { keyHash: caller.keyHash, slot: id, admission }, own: null, reconciles: true,
    leaseMs: config.leaseMs, waitUntil: waitUntilOf(c),
  });
  const relay: Relay = {
    session, reader: new StreamReader(redis, keys.stream(id)), meta, prices: config.prices,
    keepAliveMs: config.sseKeepAliveMs, resumeGraceMs: config.resumeGraceMs, stalledWriteMs: config.stalledWriteMs, deadline: Date.now() + config.relayDeadlineMs,
  };
  if (!request.stream) {
    const response = await collectCompletion(relay, c.req.raw.signal);
    response.headers.set("x-request-id", id);
    return response;
  }

  let held;
  try {
    await session.keepLease(); // registers this reader before anyone can try to resume
    held = await holdForFirstToken(relay.reader, config.sseHoldMs);
  } catch (err) {
    await session.finish(null, false);
    throw asServiceError(err);
  }
  if (held.error) {
    await session.finish(null, true);
    throw held.error;
  }
  c.header("x-request-id", id);
  return relaySSE(c, relay, held.buffered);
}
