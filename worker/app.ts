/**
 * The edge API: OpenAI's chat-completions surface in front of the GPU queue. Middlewares in order:
 * CORS, configuration, errors in OpenAI's shape, Bearer auth on /v1; then the routes.
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { ApiError } from "../shared/errors.ts";
import type { AppEnv } from "./app-env.ts";
import { authenticate } from "./auth.ts";
import { edgeConfig } from "./env.ts";
import { errorResponse, notFound, toApiError } from "./error-response.ts";
import { chatCompletions } from "./routes/chat-completions.ts";
import { completionEvents } from "./routes/completion-events.ts";
import { health } from "./routes/health.ts";
import { playground } from "./playground/routes.ts";
import { getModel, listModels } from "./routes/models.ts";

export const app = new Hono<AppEnv>();

app.use("*", cors({
  origin: "*",
  allowMethods: ["GET", "POST", "OPTIONS"],
  allowHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "OpenAI-Organization", "OpenAI-Project", "X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch", "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Retry-Count", "X-Stainless-Timeout"],
  exposeHeaders: ["Retry-After", "X-Request-Id"],
  maxAge: 86400,
}));

app.use("*", async (c, next) => {
  c.set("config", edgeConfig(c.env));
  await next();
});

app.onError((err) => {
  // Only what went wrong, never the request (keys and prompts stay out of logs).
  if (!(err instanceof ApiError)) console.error(`unhandled ${err.name}: ${err.message}`);
  return errorResponse(toApiError(err));
});
app.notFound((c) => errorResponse(notFound(`Unknown request URL: ${c.req.method} ${new URL(c.req.url).pathname.slice(0, 200)}.`, "unknown_url")));

app.use("/v1/*", async (c, next) => {
  c.set("caller", await authenticate(c.env, c.req.header("authorization"), c.get("config").defaultLimits));
  await next();
});

app.get("/health", health);
app.get("/v1/models", listModels);
app.get("/v1/models/:id{.+}", getModel);
app.post("/v1/chat/completions", chatCompletions);
app.post("/v1/openai/chat/completions", chatCompletions);
app.get("/v1/chat/completions/:id/events", completionEvents);
app.route("/", playground);
