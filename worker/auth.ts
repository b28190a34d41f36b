/**
 * Bearer-key authentication. The presented key is hashed and looked up in the API_KEYS namespace; the
 * development key (DEV_API_KEY, for `wrangler dev`) is compared hash-to-hash in constant time.
 */
import { ApiError } from "../shared/errors.ts";
import { constantTimeEqual, isApiKeyRecord, sha256Hex } from "./api-key.ts";
import type { RateLimits, WorkerEnv } from "./env.ts";

export interface Caller {
  /** SHA-256 hex of the key: what rate limits and stream ownership are keyed by. */
  keyHash: string;
  name: string;
  limits: RateLimits;
}

function unauthorized(message: string): ApiError {
  return new ApiError(401, "authentication_error", message, "invalid_api_key");
}

function bearerKey(header: string | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match ? match[1] : null;
}

export async function authenticate(env: WorkerEnv, authorization: string | undefined, defaults: RateLimits): Promise<Caller> {
  const key = bearerKey(authorization);
  if (key === null) {
    throw unauthorized("You didn't provide an API key. Provide it in the Authorization header as 'Bearer <key>'.");
  }
  const keyHash = await sha256Hex(key);
  if (env.DEV_API_KEY && constantTimeEqual(keyHash, await sha256Hex(env.DEV_API_KEY))) {
    return { keyHash, name: "development", limits: defaults };
  }
  const record: unknown = await env.API_KEYS.get(keyHash, { type: "json", cacheTtl: 60 }).catch(() => null);
  if (!isApiKeyRecord(record) || record.disabled) throw unauthorized("Incorrect API key provided.");
  return {
    keyHash,
    name: record.name,
    limits: {
      rpm: record.rpm ?? defaults.rpm,
      tpm: record.tpm ?? defaults.tpm,
      concurrent: record.concurrent ?? defaults.concurrent,
    },
  };
}
