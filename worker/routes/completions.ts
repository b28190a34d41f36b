/**
 * POST /v1/completions: the legacy text-completion endpoint (a raw prompt, no chat template), served
 * by the same queue and engine; answers `text_completion` objects (text-completion-render.ts).
 */
import { Hono } from "hono";
import { parseCompletionRequest } from "../../shared/completion-request-schema.ts";
import type { AppEnv } from "../app-env.ts";
import { readChatRequest } from "../chat-request.ts";
import { serveCompletion } from "../completion-flow.ts";

export const completionRoutes = new Hono<AppEnv>()
  .post("/completions", async (c) => serveCompletion(c, await readChatRequest(c.req.raw, c.get("config").modelId, parseCompletionRequest), "text"));
