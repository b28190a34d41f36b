/**
 * The API-key commands as data: parsing the CLI's arguments and building the `wrangler kv key`
 * invocations that read and write the API_KEYS namespace. No I/O here (keys.ts runs them), so the
 * rules are testable anywhere. Only the key's SHA-256 hash ever reaches wrangler's command line.
 */
import type { ApiKeyRecord } from "../api-key.ts";

export type KeyCommand =
  | { kind: "create"; name: string; limits: Pick<ApiKeyRecord, "rpm" | "tpm" | "concurrent">; cacheGroup?: string }
  | { kind: "list" }
  | { kind: "revoke"; name: string };

export interface Target {
  /** Deployed namespace (Cloudflare account) instead of wrangler's local state. */
  remote: boolean;
  /** Local state directory (wrangler's --persist-to); default: the one `wrangler dev` uses. */
  persistTo?: string;
}

export const USAGE = `usage: npm run keys -- <command> [options]
  create <name> [--rpm N] [--tpm N] [--concurrent N] [--cache-group NAME]
                                                       make a key; it is printed once, only its hash is stored;
                                                       keys of one cache group share the prompt-prefix cache
  list                                                 names, creation times, limits, state
  revoke <name>                                        disable the key (kept, marked disabled)
options: --remote (the deployed namespace; default is local, as used by \`wrangler dev\`), --persist-to <dir>`;

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export class UsageError extends Error {}

export function parseKeyArgs(argv: string[]): { command: KeyCommand; target: Target } {
  const positional: string[] = [];
  const target: Target = { remote: false };
  const limits: Pick<ApiKeyRecord, "rpm" | "tpm" | "concurrent"> = {};
  let cacheGroup: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    const count = () => {
      const v = Number(value());
      if (!Number.isInteger(v) || v < 0) throw new UsageError(`${arg} takes a non-negative integer`);
      return v;
    };
    if (arg === "--remote") target.remote = true;
    else if (arg === "--local") target.remote = false;
    else if (arg === "--persist-to") target.persistTo = value();
    else if (arg === "--rpm") limits.rpm = count();
    else if (arg === "--tpm") limits.tpm = count();
    else if (arg === "--concurrent") limits.concurrent = count();
    else if (arg === "--cache-group") {
      cacheGroup = value();
      if (!NAME.test(cacheGroup)) throw new UsageError("--cache-group takes a name of 1–64 letters, digits, '_', '.', '-'");
    }
    else if (arg.startsWith("--")) throw new UsageError(`unknown option ${arg}`);
    else positional.push(arg);
  }
  if (target.remote && target.persistTo) throw new UsageError("--persist-to is for local state only");
  const [kind, name, ...rest] = positional;
  if (rest.length > 0) throw new UsageError(`unexpected ${rest.join(" ")}`);
  if (kind === "list") {
    if (name !== undefined) throw new UsageError("list takes no name");
    return { command: { kind: "list" }, target };
  }
  if (kind === "create" || kind === "revoke") {
    if (name === undefined || !NAME.test(name)) throw new UsageError(`${kind} needs a name of 1–64 letters, digits, '_', '.', '-'`);
    if (kind === "revoke" && (Object.keys(limits).length > 0 || cacheGroup !== undefined)) throw new UsageError("revoke takes no limits or cache group");
    if (kind === "revoke") return { command: { kind, name }, target };
    return { command: { kind, name, limits, ...(cacheGroup === undefined ? {} : { cacheGroup }) }, target };
  }
  throw new UsageError(kind === undefined ? "no command" : `unknown command ${kind}`);
}

/** `wrangler kv key <op> --binding API_KEYS` with the target's flags. */
export function wranglerKvArgs(op: "put" | "get" | "list", target: Target, ...rest: string[]): string[] {
  const args = ["kv", "key", op, ...rest, "--binding", "API_KEYS", target.remote ? "--remote" : "--local"];
  if (target.persistTo) args.push("--persist-to", target.persistTo);
  return args;
}

/** A key's record goes in both the value (read by the Worker) and the metadata (so `list` is one call). */
export function putRecordArgs(hash: string, record: ApiKeyRecord, target: Target): string[] {
  const json = JSON.stringify(record);
  return wranglerKvArgs("put", target, hash, json, "--metadata", json);
}

export interface ListedKey {
  hash: string;
  record: ApiKeyRecord | null;
}

/** Parses `wrangler kv key list` output (a JSON array of {name, metadata?}, after any banner). */
export function parseKeyList(stdout: string): ListedKey[] {
  const start = stdout.indexOf("[");
  if (start < 0) throw new Error("wrangler kv key list printed no JSON list");
  const entries = JSON.parse(stdout.slice(start)) as Array<{ name: string; metadata?: unknown }>;
  return entries.map((e) => ({ hash: e.name, record: (e.metadata ?? null) as ApiKeyRecord | null }));
}

export function formatKeyTable(keys: ListedKey[]): string {
  const rows = [["NAME", "CREATED", "STATE", "RPM", "TPM", "CONCURRENT", "CACHE GROUP", "HASH"]];
  for (const { hash, record } of keys) {
    rows.push([
      record?.name ?? "(no metadata)", record?.created ?? "", record ? (record.disabled ? "revoked" : "active") : "?",
      String(record?.rpm ?? "default"), String(record?.tpm ?? "default"), String(record?.concurrent ?? "default"),
      record?.cacheGroup ?? "(own)", `${hash.slice(0, 12)}…`,
    ]);
  }
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
  return rows.map((r) => r.map((cell, col) => cell.padEnd(widths[col])).join("  ").trimEnd()).join("\n");
}
