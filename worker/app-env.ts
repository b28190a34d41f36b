/** Hono's typing of this app: bindings, and what middleware hands to handlers. */
import type { Caller } from "./auth.ts";
import type { EdgeConfig, WorkerEnv } from "./env.ts";

export interface AppEnv {
  Bindings: WorkerEnv;
  Variables: { config: EdgeConfig; caller: Caller };
}
