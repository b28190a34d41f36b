/** The request's waitUntil, so cleanup after a disconnect outlives the response. */
import type { Context } from "hono";
import type { WaitUntil } from "./completion-session.ts";

export function waitUntilOf(c: Context): WaitUntil {
  return (work) => {
    const settled = work.catch(() => {});
    try {
      c.executionCtx.waitUntil(settled);
    } catch {
      // no execution context (a direct app.fetch without one): the promise still runs to its end
    }
  };
}
