import { describe, expect, it } from "vitest";
import { constantTimeEqual, isApiKeyRecord, newApiKey, sha256Hex } from "../api-key.ts";
import { parseKeyArgs, parseKeyList, putRecordArgs, UsageError } from "../cli/key-commands.ts";

describe("npm run keys: arguments", () => {
  it("parses create with limits, list, revoke, and the local/remote target", () => {
    expect(parseKeyArgs(["create", "alice", "--rpm", "5", "--concurrent", "2"])).toEqual({
      command: { kind: "create", name: "alice", limits: { rpm: 5, concurrent: 2 } }, target: { remote: false },
    });
    expect(parseKeyArgs(["create", "carol", "--cache-group", "acme-corp"])).toEqual({
      command: { kind: "create", name: "carol", limits: {}, cacheGroup: "acme-corp" }, target: { remote: false },
    });
    expect(parseKeyArgs(["list", "--remote"])).toEqual({ command: { kind: "list" }, target: { remote: true } });
    expect(parseKeyArgs(["revoke", "bob", "--persist-to", "/tmp/x"])).toEqual({ command: { kind: "revoke", name: "bob" }, target: { remote: false, persistTo: "/tmp/x" } });
  });

  it("refuses what it cannot do", () => {
    for (const bad of [[], ["create"], ["create", "has space"], ["create", "a", "--rpm", "-1"], ["revoke", "a", "--tpm", "5"], ["list", "x"], ["drop", "a"], ["create", "a", "--bogus"], ["list", "--remote", "--persist-to", "/tmp"],
      ["create", "a", "--cache-group"], ["create", "a", "--cache-group", "has space"], ["revoke", "a", "--cache-group", "acme"]]) {
      expect(() => parseKeyArgs(bad), bad.join(" ")).toThrow(UsageError);
    }
  });
});

describe("npm run keys: what reaches wrangler", () => {
  it("writes the record as value and metadata under the key's hash, never the key", async () => {
    const key = newApiKey();
    const hash = await sha256Hex(key);
    const record = { name: "alice", created: "2026-11-22T00:00:00.000Z", disabled: false, rpm: 5 };
    const args = putRecordArgs(hash, record, { remote: true });
    expect(args).toEqual(["kv", "key", "put", hash, JSON.stringify(record), "--metadata", JSON.stringify(record), "--binding", "API_KEYS", "--remote"]);
    expect(args.join(" ")).not.toContain(key);
  });

  it("reads wrangler's list output after its banner", () => {
    const out = ` ⛅️ wrangler 4.86.0\n[\n  {"name": "ab12", "metadata": {"name": "bob", "created": "t", "disabled": true}},\n  {"name": "cd34"}\n]\n`;
    expect(parseKeyList(out)).toEqual([{ hash: "ab12", record: { name: "bob", created: "t", disabled: true } }, { hash: "cd34", record: null }]);
  });
});

describe("API keys", () => {
  it("are 'sk-phi4-' and 32 base62 characters, different every time", () => {
    const keys = new Set(Array.from({ length: 100 }, newApiKey));
    expect(keys.size).toBe(100);
    for (const key of keys) expect(key).toMatch(/^sk-phi4-[A-Za-z0-9]{32}$/);
  });

  it("hash to SHA-256 hex and compare in full", async () => {
    expect(await sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(constantTimeEqual("abcd", "abcd")).toBe(true);
    expect(constantTimeEqual("abcd", "abce")).toBe(false);
    expect(constantTimeEqual("abcd", "abc")).toBe(false);
    expect(isApiKeyRecord({ name: "x", created: "t", disabled: false })).toBe(true);
    expect(isApiKeyRecord({ name: "x" })).toBe(false);
  });
});
