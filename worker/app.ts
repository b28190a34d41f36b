/**
 * The edge API: OpenAI's surface in front of the GPU queue. Middlewares in order: CORS,
 * configuration, errors in OpenAI's shape; on /v1 Bearer auth and the body limit; then the routes,
 * one Hono sub-app per resource (a new route is one `app.route` line here).
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { ApiError } from "../shared/errors.ts";
import type { AppEnv } from "./app-env.ts";
import { apiKeyAuth } from "./auth.ts";
import { errorResponse, notFound, toApiError } from "./error-response.ts";
import { requestBodyLimit } from "./middleware/body-limit.ts";
import { withEdgeConfig } from "./middleware/edge-config.ts";
import { chatCompletionRoutes } from "./routes/chat-completions.ts";
import { completionCancelRoutes } from "./routes/completion-cancel.ts";
import { completionEventRoutes } from "./routes/completion-events.ts";
import { completionRoutes } from "./routes/completions.ts";
import { healthRoutes } from "./routes/health.ts";
import { modelRoutes } from "./routes/models.ts";
import { playgroundRoutes } from "./playground/routes.ts";

export const app = new Hono<AppEnv>();

app.use("*", cors({
  origin: "*",
  allowMethods: ["GET", "POST", "OPTIONS"],
  allowHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "OpenAI-Organization", "OpenAI-Project", "X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch", "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Retry-Count", "X-Stainless-Timeout"],
  exposeHeaders: ["Retry-After", "X-Request-Id"],
  maxAge: 86400,
}));
app.use("*", withEdgeConfig);

app.onError((err) => {
  // Middlewares (bearer-auth) carry their finished OpenAI-shaped response.
  if (err instanceof HTTPException) return err.getResponse();
  // Only what went wrong, never the request (keys and prompts stay out of logs).
  if (!(err instanceof ApiError)) console.error(`unhandled ${err.name}: ${err.message}`);
  return errorResponse(toApiError(err));
});
app.notFound((c) => errorResponse(notFound(`Unknown request URL: ${c.req.method} ${new URL(c.req.url).pathname.slice(0, 200)}.`, "unknown_url")));

app.use("/v1/*", apiKeyAuth, requestBodyLimit);

app.route("/", healthRoutes);
app.route("/v1", modelRoutes);
app.route("/v1", chatCompletionRoutes);
app.route("/v1/openai", chatCompletionRoutes);
app.route("/v1", completionEventRoutes);
app.route("/v1", completionCancelRoutes);
app.route("/v1", completionRoutes);
app.route("/", playgroundRoutes);
