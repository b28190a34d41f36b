/**
 * The playground's routes: the page at / and /playground, its script and stylesheet. Public (the page
 * holds no secret; the API calls it makes carry the user's key). A strict Content-Security-Policy:
 * everything from this origin only, no inline script or style, no plugins, no framing.
 */
import { Hono, type Context } from "hono";
import { secureHeaders } from "hono/secure-headers";
import type { AppEnv } from "../app-env.ts";
import { playgroundPage, SCRIPT_PATH, STYLE_PATH } from "./page-html.ts";
import { playgroundScript } from "./page-script.ts";
import { playgroundStyle } from "./page-style.ts";

export const CONTENT_SECURITY_POLICY = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  connectSrc: ["'self'"],
  // The page's only image is its empty data: favicon (so the browser does not ask for /favicon.ico).
  imgSrc: ["data:"],
  baseUri: ["'none'"],
  formAction: ["'none'"],
  frameAncestors: ["'none'"],
  requireTrustedTypesFor: ["'script'"],
};

// Per route, not `use("*")`: mounted at "/", a wildcard middleware would also wrap the API.
const pageHeaders = secureHeaders({ contentSecurityPolicy: CONTENT_SECURITY_POLICY });
// New code reaches browsers on the next load; the files are tiny.
const CACHE = "no-cache";

const page = (c: Context<AppEnv>) => {
  c.header("Cache-Control", CACHE);
  return c.html(playgroundPage(c.get("config").modelId));
};

export const playgroundRoutes = new Hono<AppEnv>()
  .get("/", pageHeaders, page)
  .get("/playground", pageHeaders, page)
  .get(SCRIPT_PATH, pageHeaders, (c) =>
    c.body(playgroundScript, 200, { "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": CACHE }))
  .get(STYLE_PATH, pageHeaders, (c) =>
    c.body(playgroundStyle, 200, { "Content-Type": "text/css; charset=utf-8", "Cache-Control": CACHE }));
