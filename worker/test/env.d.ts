// cloudflare:test's `env` is the Worker's environment.
import type { WorkerEnv } from "../env.ts";

declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {}
  }
}
export {};
