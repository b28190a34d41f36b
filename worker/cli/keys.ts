/**
 * `npm run keys -- create <name> | list | revoke <name>`: manages the Worker's API keys in the
 * API_KEYS KV namespace through wrangler (local state by default, `--remote` for the deployed one).
 * The key is printed once at creation; only its SHA-256 hash and a metadata record are stored.
 */
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { newApiKey, sha256Hex, type ApiKeyRecord } from "../api-key.ts";
import { formatKeyTable, parseKeyArgs, parseKeyList, putRecordArgs, USAGE, UsageError, wranglerKvArgs, type Target } from "./key-commands.ts";

const wranglerBin = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");

function wrangler(args: string[]): string {
  const run = spawnSync(process.execPath, [wranglerBin, ...args], { encoding: "utf8", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  if (run.status !== 0) throw new Error(`wrangler ${args.slice(0, 3).join(" ")} failed:\n${run.stderr || run.stdout}`);
  return run.stdout;
}

function listKeys(target: Target) {
  return parseKeyList(wrangler(wranglerKvArgs("list", target)));
}

async function main(): Promise<void> {
  if (["help", "--help", "-h"].includes(process.argv[2] ?? "")) {
    console.log(USAGE);
    return;
  }
  const { command, target } = parseKeyArgs(process.argv.slice(2));
  const where = target.remote ? "the deployed namespace" : `local state${target.persistTo ? ` (${target.persistTo})` : ""}`;
  if (command.kind === "list") {
    console.log(formatKeyTable(listKeys(target)));
    return;
  }
  const existing = listKeys(target).filter((k) => k.record?.name === command.name);
  if (command.kind === "create") {
    if (existing.length > 0) throw new UsageError(`a key named '${command.name}' already exists (revoke it or choose another name)`);
    const key = newApiKey();
    const record: ApiKeyRecord = { name: command.name, created: new Date().toISOString(), disabled: false, ...command.limits,
      ...(command.cacheGroup === undefined ? {} : { cacheGroup: command.cacheGroup }) };
    wrangler(putRecordArgs(await sha256Hex(key), record, target));
    console.error(`created '${command.name}' in ${where}; the key is shown once, store it now:`);
    console.log(key);
    return;
  }
  const active = existing.filter((k) => k.record && !k.record.disabled);
  if (active.length === 0) throw new UsageError(`no active key named '${command.name}' in ${where}`);
  for (const { hash, record } of active) wrangler(putRecordArgs(hash, { ...record!, disabled: true }, target));
  console.error(`revoked '${command.name}' in ${where}`);
}

main().catch((err: unknown) => {
  // One line, like every operator tool: what went wrong, and for usage mistakes the usage.
  const message = (err instanceof Error ? err.message : String(err)).replace(/\s+/g, " ").trim();
  if (err instanceof UsageError) console.error(`error: ${message}; usage: npm run keys -- create <name> [--rpm N --tpm N --concurrent N --cache-group NAME] | list | revoke <name> [--remote]`);
  else console.error(`error: ${message}`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
});
