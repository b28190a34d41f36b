/** Hono's typing of this app: bindings, and what middleware hands to handlers. */
import type { EdgeConfig, RateLimits, WorkerEnv } from "./env.ts";

/** Who is calling, as bearer authentication (auth.ts) found them. */
export interface Caller {
  /** SHA-256 hex of the key: what rate limits and stream ownership are keyed by. */
  keyHash: string;
  name: string;
  limits: RateLimits;
  /** The key's prefix-cache group, if it shares its cache with others (ApiKeyRecord.cacheGroup). */
  cacheGroup?: string;
}

export interface AppEnv {
  Bindings: WorkerEnv;
  Variables: { config: EdgeConfig; caller: Caller };
}
