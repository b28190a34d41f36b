/**
 * The prefix-cache salt each job carries: one key's cached prompt blocks are its own, unless its record
 * names a cache group, which every key of that group (one organisation) then shares.
 */
import { env } from "cloudflare:test";
import { afterAll, describe, expect, it } from "vitest";
import { sha256Hex, type ApiKeyRecord } from "../api-key.ts";
import { answer, EdgeHarness, hello } from "./harness.ts";

const edge = new EdgeHarness("cache-group");
afterAll(() => edge.close());

async function keyInGroup(cacheGroup?: string): Promise<string> {
  const key = `sk-phi4-group-${crypto.randomUUID()}`;
  const record: ApiKeyRecord = { name: "grouped", created: new Date().toISOString(), disabled: false, ...(cacheGroup === undefined ? {} : { cacheGroup }) };
  await env.API_KEYS.put(await sha256Hex(key), JSON.stringify(record));
  return key;
}

/** The cacheSalt of the job one request by `key` enqueues (the node's side played to completion). */
async function saltOf(key: string): Promise<string> {
  const responding = edge.chat(hello(), key);
  const job = await edge.nextJob();
  await edge.publish(job.id, ...answer(["ok"], 5));
  expect((await responding).status).toBe(200);
  return job.cacheSalt ?? "";
}

describe("prefix-cache salt per API key", () => {
  it("is shared by keys of one cache group, and differs across groups and for keys without one", async () => {
    const [acme1, acme2, globex, loneA, loneB] = await Promise.all([
      keyInGroup("acme"), keyInGroup("acme"), keyInGroup("globex"), keyInGroup(), keyInGroup(),
    ]);
    const salts = { acme1: await saltOf(acme1), acme2: await saltOf(acme2), globex: await saltOf(globex), loneA: await saltOf(loneA), loneB: await saltOf(loneB) };
    expect(salts.acme1).toBe(salts.acme2);
    expect(new Set([salts.acme1, salts.globex, salts.loneA, salts.loneB]).size).toBe(4);
    // The same key keeps its salt from request to request (its cache stays reachable).
    expect(await saltOf(loneA)).toBe(salts.loneA);
    for (const salt of Object.values(salts)) expect(salt).toMatch(/^[0-9a-f]{16}$/);
  });
});
