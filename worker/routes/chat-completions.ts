/**
 * POST /v1/chat/completions (and /v1/openai/chat/completions): validate, then admit, enqueue and relay
 * (completion-flow.ts). Nothing reaches the queue before the body is valid and the key is within its limits.
 */
import { Hono } from "hono";
import type { AppEnv } from "../app-env.ts";
import { readChatRequest } from "../chat-request.ts";
import { serveCompletion } from "../completion-flow.ts";

export const chatCompletionRoutes = new Hono<AppEnv>()
  .post("/chat/completions", async (c) => serveCompletion(c, await readChatRequest(c.req.raw, c.get("config").modelId), "chat"));
