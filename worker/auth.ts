/**
 * Bearer-key authentication (hono/bearer-auth with a verifyToken that looks the key up). The presented
 * key is hashed and looked up in the API_KEYS namespace; the development key (DEV_API_KEY, see
 * development-key.ts) is compared hash-to-hash in constant time. Every refusal is OpenAI's 401.
 */
import { bearerAuth } from "hono/bearer-auth";
import { ApiError } from "../shared/errors.ts";
import { constantTimeEqual, isApiKeyRecord, sha256Hex } from "./api-key.ts";
import type { AppEnv, Caller } from "./app-env.ts";
import { developmentKey } from "./development-key.ts";
import type { RateLimits, WorkerEnv } from "./env.ts";
import { errorResponse } from "./error-response.ts";
import { UNAVAILABLE_RETRY_AFTER_S } from "./redis.ts";

function unauthorized(message: string): Response {
  return errorResponse(new ApiError(401, "authentication_error", message, "invalid_api_key"));
}

const NO_KEY = "You didn't provide an API key. Provide it in the Authorization header as 'Bearer <key>'.";

/** The caller a key belongs to, or null for an unknown or disabled key. */
export async function identify(env: WorkerEnv, key: string, defaults: RateLimits): Promise<Caller | null> {
  const keyHash = await sha256Hex(key);
  const devKey = developmentKey(env);
  if (devKey && constantTimeEqual(keyHash, await sha256Hex(devKey))) {
    return { keyHash, name: "development", limits: defaults };
  }
  let record: unknown;
  try {
    record = await env.API_KEYS.get(keyHash, { type: "json", cacheTtl: 60 });
  } catch {
    // The key may well be valid: an outage is the service's fault, not the caller's (503, not 401).
    throw new ApiError(503, "service_unavailable", "The API key store is unreachable; retry shortly.", "key_store_unavailable", null, UNAVAILABLE_RETRY_AFTER_S);
  }
  if (!isApiKeyRecord(record) || record.disabled) return null;
  return {
    keyHash,
    name: record.name,
    limits: {
      rpm: record.rpm ?? defaults.rpm,
      tpm: record.tpm ?? defaults.tpm,
      concurrent: record.concurrent ?? defaults.concurrent,
    },
    ...(typeof record.cacheGroup === "string" ? { cacheGroup: record.cacheGroup } : {}),
  };
}

export const apiKeyAuth = bearerAuth<AppEnv>({
  verifyToken: async (token, c) => {
    const caller = await identify(c.env, token, c.get("config").defaultLimits);
    if (caller) c.set("caller", caller);
    return caller !== null;
  },
  noAuthenticationHeader: { message: () => unauthorized(NO_KEY) },
  invalidAuthenticationHeader: { message: () => unauthorized(NO_KEY) },
  invalidToken: { message: () => unauthorized("Incorrect API key provided.") },
});
