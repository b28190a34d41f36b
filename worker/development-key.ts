/**
 * The development key (DEV_API_KEY) is a convenience of local development only. It is accepted only
 * when the Worker is told it runs locally (LOCAL_DEVELOPMENT=true, which only `.dev.vars` and the
 * stack starter set, never wrangler.toml), and never when it is a value printed in this repository.
 */
import type { WorkerEnv } from "./env.ts";

/** Values the repository shows as examples (.dev.vars.example): known to everyone, so never a key. */
export const EXAMPLE_DEV_API_KEYS: readonly string[] = ["sk-dev-local-phi4", "change-me"];

export function isLocalDevelopment(env: WorkerEnv): boolean {
  return env.LOCAL_DEVELOPMENT === "true";
}

/** The development key in force, or null. */
export function developmentKey(env: WorkerEnv): string | null {
  const key = env.DEV_API_KEY;
  if (!key || !isLocalDevelopment(env) || EXAMPLE_DEV_API_KEYS.includes(key)) return null;
  return key;
}
