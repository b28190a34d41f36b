/**
 * The grammar engine on Phi-4's real vocabulary: JSON schemas and tool-call grammars compile, and any
 * walk that only takes allowed tokens (here: uniformly random ones, a worst-case model) ends in text
 * that parses and validates (ajv).
 */
import Ajv from "ajv";
import { beforeAll, describe, expect, it } from "vitest";
import { STOP_TOKEN_IDS } from "../../tokenizer/special-tokens.ts";
import { phi4Tokenizer } from "../../tokenizer/phi4-tokenizer.ts";
import { ToolCallParser } from "../../tools/tool-call-parser.ts";
import { GrammarCompiler } from "../grammar-compiler.ts";
import type { GrammarSpec } from "../grammar-spec.ts";
import { maskDisallowed } from "../../engine/logits-constraint.ts";

const tokenizer = phi4Tokenizer();
let compiler: GrammarCompiler;

beforeAll(async () => {
  compiler = await GrammarCompiler.create(tokenizer, [...STOP_TOKEN_IDS]);
}, 120_000);

function allowedTokens(mask: Uint32Array): number[] {
  const out: number[] = [];
  for (let t = 0; t < tokenizer.vocabSize; t++) if (mask[t >> 5] & (1 << (t & 31))) out.push(t);
  return out;
}

/** Draws uniformly among allowed tokens until a stop token (after forcing `prefix`): the text, and whether it stopped. */
async function randomWalk(spec: GrammarSpec, seed: number, maxSteps = 3000, prefix = ""): Promise<{ text: string; stopped: boolean }> {
  const constraint = await compiler.constraint(await compiler.compile(spec));
  let state = seed;
  const ids: number[] = tokenizer.encode(prefix);
  for (const token of ids) constraint.accept(token);
  try {
    for (let step = 0; step < maxSteps; step++) {
      const allowed = allowedTokens(constraint.allowedTokens());
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      const token = allowed[state % allowed.length];
      constraint.accept(token);
      if ((STOP_TOKEN_IDS as readonly number[]).includes(token)) {
        expect(constraint.isTerminated).toBe(true);
        return { text: tokenizer.decode(ids), stopped: true };
      }
      ids.push(token);
    }
    return { text: tokenizer.decode(ids), stopped: false };
  } finally {
    constraint.dispose();
  }
}

const person = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 12 },
    age: { type: "integer", minimum: 0, maximum: 120 },
    role: { enum: ["admin", "user", "guest"] },
    address: {
      type: "object",
      properties: { city: { type: "string", maxLength: 10 }, zip: { type: "string", pattern: "^[0-9]{5}$" } },
      required: ["city", "zip"],
      additionalProperties: false,
    },
    tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
    active: { type: "boolean" },
  },
  required: ["name", "age", "role", "address", "tags", "active"],
  additionalProperties: false,
};

describe("grammar compiler", () => {
  const ajv = new Ajv({ strict: false });

  it("constrains output to JSON that validates against a strict schema (nested objects, arrays, enums, required)", async () => {
    const validate = ajv.compile(person);
    for (const seed of [1, 2, 3]) {
      const { text, stopped } = await randomWalk({ kind: "json", schema: person, strict: true }, seed);
      expect(stopped).toBe(true);
      const value = JSON.parse(text);
      expect(validate(value), `${text}: ${ajv.errorsText(validate.errors)}`).toBe(true);
      // No free whitespace: compact separators only.
      expect(text).toBe(JSON.stringify(value).replace(/,"/g, ', "').replace(/":/g, '": ').replace(/,(?=[\d"tfn[{-])/g, ", "));
    }
  }, 120_000);

  it("forces tool calls whose arguments validate, with two tools", async () => {
    const weather = { type: "object", properties: { city: { type: "string", maxLength: 8 }, unit: { enum: ["C", "F"] } }, required: ["city", "unit"], additionalProperties: false };
    const time = { type: "object", properties: { zone: { type: "string", maxLength: 8 } }, required: ["zone"], additionalProperties: false };
    const validators = new Map([["get_weather", ajv.compile(weather)], ["get_time", ajv.compile(time)]]);
    const spec: GrammarSpec = {
      kind: "tool_calls", mode: "forced", single: false, orJson: null,
      functions: [{ name: "get_weather", parameters: weather, strict: true }, { name: "get_time", parameters: time, strict: true }],
    };
    const seen = new Set<string>();
    for (const seed of [11, 12, 13, 14]) {
      const { text, stopped } = await randomWalk(spec, seed);
      expect(stopped).toBe(true);
      const parser = new ToolCallParser(new Set(validators.keys()), (i) => `call_${i}`);
      const parsed = parser.push(text);
      parser.finish();
      expect(parsed.content).toBe("");
      const calls = new Map<number, { name: string; args: string }>();
      for (const d of parsed.calls) {
        if (d.function.name !== undefined) calls.set(d.index, { name: d.function.name, args: "" });
        calls.get(d.index)!.args += d.function.arguments;
      }
      expect(calls.size).toBeGreaterThan(0);
      for (const { name, args } of calls.values()) {
        seen.add(name);
        const validate = validators.get(name)!;
        expect(validate(JSON.parse(args)), args).toBe(true);
      }
    }
    expect(seen.size).toBeGreaterThan(0);
  }, 120_000);

  it("named function: exactly one call of that function", async () => {
    const spec: GrammarSpec = {
      kind: "tool_calls", mode: "forced", single: true, orJson: null,
      functions: [{ name: "ping", parameters: { type: "object", properties: { n: { type: "integer", minimum: 1, maximum: 9 } }, required: ["n"] }, strict: true }],
    };
    const { text, stopped } = await randomWalk(spec, 5);
    expect(stopped).toBe(true);
    expect(text).toMatch(/^<tool_call>\{"name": "ping", "arguments": \{"n": [1-9]\}\}<\/tool_call>$/);
  }, 120_000);

  it("tool_choice auto: free text, and once a call begins its arguments validate", async () => {
    const params = { type: "object", properties: { q: { type: "string", maxLength: 6 } }, required: ["q"], additionalProperties: false };
    const spec: GrammarSpec = { kind: "tool_calls", mode: "triggered", single: true, orJson: null, functions: [{ name: "search", parameters: params, strict: true }] };
    const { text } = await randomWalk(spec, 9, 60, "Let me look that up. <tool_call>");
    const parser = new ToolCallParser(new Set(["search"]), (i) => `call_${i}`);
    const parsed = parser.push(text);
    expect(parsed.content).toBe("Let me look that up. ");
    const args = parsed.calls.map((d) => d.function.arguments).join("");
    expect(parsed.calls[0].function.name).toBe("search");
    expect(ajv.validate(params, JSON.parse(args)), args).toBe(true);
  }, 120_000);

  it("compiles each distinct spec once", async () => {
    const spec: GrammarSpec = { kind: "json", schema: { type: "object", properties: { q: { type: "number" } } }, strict: false };
    const before = compiler.compiles;
    const a = await compiler.compile(spec);
    const b = await compiler.compile(JSON.parse(JSON.stringify(spec)) as GrammarSpec);
    expect(b).toBe(a);
    expect(compiler.compiles).toBe(before + 1);
  }, 120_000);

  it("compiles every keyword the edge accepts", async () => {
    const schemas = [
      { type: ["string", "null"], minLength: 1, maxLength: 3 },
      { type: "object", properties: { a: { $ref: "#/$defs/n" } }, $defs: { n: { type: "number", minimum: 0, exclusiveMaximum: 5 } } },
      { type: "object", properties: { a: { $ref: "#/definitions/n" } }, definitions: { n: { type: "integer", exclusiveMinimum: 0, maximum: 5 } } },
      { type: "array", prefixItems: [{ const: 1 }, { type: "string", format: "date" }], minItems: 2, maxItems: 2, items: false },
      { anyOf: [{ type: "string", pattern: "^a+$" }, { type: "integer" }] },
      { oneOf: [{ type: "boolean" }, { type: "null" }] },
      { allOf: [{ type: "object", properties: { x: { type: "string", format: "email" } } }] },
      { title: "t", description: "d", default: {}, examples: [], $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", additionalProperties: { type: "integer" } },
    ];
    for (const schema of schemas) await expect(compiler.compile({ kind: "json", schema, strict: false })).resolves.toBeDefined();
  }, 120_000);
});

describe("token mask", () => {
  it("masks a real grammar's forbidden tokens in a logits row, leaving the allowed ones", async () => {
    const constraint = await compiler.constraint(await compiler.compile({ kind: "json", schema: { enum: ["yes", "no"] }, strict: true }));
    const logits = new Float32Array(tokenizer.vocabSize).fill(0.5);
    maskDisallowed(logits, 0, tokenizer.vocabSize, constraint.allowedTokens());
    const allowed: string[] = [];
    for (let t = 0; t < tokenizer.vocabSize; t++) if (logits[t] === 0.5) allowed.push(tokenizer.decode([t]));
    expect(allowed.length).toBeGreaterThan(0);
    for (const piece of allowed) expect('"yes"'.startsWith(piece) || '"no"'.startsWith(piece)).toBe(true);
    expect(() => constraint.accept(tokenizer.encode("maybe")[0])).toThrow(/not allowed/);
    constraint.dispose();
  }, 120_000);
});
