/** Parses the Worker's vars once per request into the typed EdgeConfig every handler reads. */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app-env.ts";
import { edgeConfig } from "../env.ts";

export const withEdgeConfig = createMiddleware<AppEnv>(async (c, next) => {
  c.set("config", edgeConfig(c.env));
  await next();
});
