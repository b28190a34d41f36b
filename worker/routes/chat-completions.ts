/**
 * POST /v1/chat/completions (and /v1/openai/chat/completions): validate, admit, enqueue, relay.
 * Nothing reaches the queue before the body is valid and the key is within its limits.
 */
import { Hono } from "hono";
import { CONTEXT_LENGTH } from "../../shared/limits.ts";
import { outputBudgetError } from "../../shared/output-budget.ts";
import { newCompletionId, PROTOCOL_VERSION, type ChatJob } from "../../shared/protocol.ts";
import type { ChatRequest } from "../../shared/request-schema.ts";
import { redisKeys } from "../../shared/redis-keys.ts";
import { sha256Hex } from "../api-key.ts";
import type { AppEnv } from "../app-env.ts";
import { estimatePromptTokens, readChatRequest } from "../chat-request.ts";
import { admitAndEnqueue } from "../admission.ts";
import { prefixCacheSalt } from "../queue.ts";
import type { CompletionMeta } from "../completion-meta.ts";
import { CompletionSession } from "../completion-session.ts";
import { asServiceError, closeRedis, openRedis } from "../redis.ts";
import { collectCompletion, holdForFirstToken, relaySSE, type Relay } from "../relay.ts";
import { StreamReader } from "../stream-reader.ts";
import { waitUntilOf } from "../wait-until.ts";

/** What admission charges against tokens per minute: the prompt estimate plus the most each choice may generate. */
export function admissionTokens(request: ChatRequest): number {
  const prompt = estimatePromptTokens(request);
  const perChoice = request.maxTokens ?? Math.max(0, CONTEXT_LENGTH - prompt);
  return prompt + request.n * perChoice;
}

export const chatCompletionRoutes = new Hono<AppEnv>()
  .post("/chat/completions", async (c) => {
    const config = c.get("config");
    const caller = c.get("caller");
    const request = await readChatRequest(c.req.raw, config.modelId);
    const overBudget = outputBudgetError(request, estimatePromptTokens(request));
    if (overBudget) throw overBudget;
    const keys = redisKeys(config.redisPrefix);
    const id = newCompletionId();
    const created = Math.floor(Date.now() / 1000);
    const job: ChatJob = {
      protocol: PROTOCOL_VERSION,
      id,
      created,
      enqueuedAt: Date.now(),
      request: { ...request, user: request.user === null ? null : await sha256Hex(request.user) },
      cacheSalt: await prefixCacheSalt(caller.keyHash),
    };
    const meta: CompletionMeta = {
      ownerKeyHash: caller.keyHash,
      model: config.modelId,
      created,
      n: request.n,
      logprobs: request.logprobs,
      includeUsage: request.includeUsage,
    };

    const redis = await openRedis(config.redisUrl);
    let admission;
    try {
      admission = await admitAndEnqueue(redis, keys, {
        keyHash: caller.keyHash, limits: caller.limits, job, meta,
        estimatedTokens: admissionTokens(request), maxQueueDepth: config.maxQueueDepth, leaseMs: config.leaseMs,
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
      keepAliveMs: config.sseKeepAliveMs, resumeGraceMs: config.resumeGraceMs, deadline: Date.now() + config.relayDeadlineMs,
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
  });
