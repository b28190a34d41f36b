/**
 * API keys as stored: the KV namespace maps the SHA-256 hex of a key to its record. The key itself is
 * never stored or logged; the CLI prints it once at creation.
 */
export interface ApiKeyRecord {
  name: string;
  /** ISO time of creation. */
  created: string;
  disabled: boolean;
  /** Per-key overrides of the deployment's RATE_LIMIT_* defaults. */
  rpm?: number;
  tpm?: number;
  concurrent?: number;
  /**
   * Keys with the same cache group (one organisation) share the GPU nodes' prefix cache; without one a
   * key's cached prompt blocks are its own (worker/queue.ts prefixCacheSalt).
   */
  cacheGroup?: string;
}

const HEX = "0123456789abcdef";

/** SHA-256 of a UTF-8 string as lowercase hex (WebCrypto: the same in workerd and Node). */
export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  let out = "";
  for (const byte of digest) out += HEX[byte >> 4] + HEX[byte & 15];
  return out;
}

/** Compares two equal-length strings in time independent of where they differ. */
export function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export function isApiKeyRecord(value: unknown): value is ApiKeyRecord {
  const r = value as ApiKeyRecord | null;
  return typeof r === "object" && r !== null && typeof r.name === "string" && typeof r.disabled === "boolean";
}

/** A new key: "sk-phi4-" and 32 random base62 characters (190 bits). */
export function newApiKey(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const bytes = new Uint8Array(48);
  crypto.getRandomValues(bytes);
  let s = "";
  for (const b of bytes) {
    if (b >= 248) continue; // 248 = 4 × 62: reject to keep the draw uniform
    s += alphabet[b % 62];
    if (s.length === 32) break;
  }
  return s.length === 32 ? `sk-phi4-${s}` : newApiKey();
}
