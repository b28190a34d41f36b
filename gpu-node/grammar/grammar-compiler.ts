/**
 * Compiles grammar specs (grammar-spec.ts) against Phi-4's vocabulary with XGrammar, once per distinct
 * spec: compiled grammars are kept in a small LRU cache, so a schema sent with every request costs its
 * compile once. JSON is compiled without free whitespace (fixed ", " and ": " separators, no
 * indentation): a weak model cannot spend its tokens on spaces and newlines.
 */
import type { CompiledGrammar, GrammarCompiler as XGrammarCompiler, StructuralTagFormat, TagFormat } from "@mlc-ai/web-xgrammar";
import type { Phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";
import { CALL_SEPARATOR, CALL_TAIL, callHead, TOOL_CALL_OPEN } from "../tools/tool-call-format.ts";
import { byteLevelVocabulary } from "./byte-level-vocabulary.ts";
import { specKey, type GrammarSpec } from "./grammar-spec.ts";
import { TokenConstraint } from "./token-constraint.ts";
import { loadXGrammar, type XGrammarModule } from "./xgrammar-module.ts";

/** Distinct compiled grammars kept (a compiled JSON schema is tens of kB to a few MB of WebAssembly memory). */
export const GRAMMAR_CACHE_SIZE = 64;

/** Compact JSON: what `JSON.stringify` writes, plus a space after ',' and ':'. */
const SEPARATORS: [string, string] = [", ", ": "];
/** XGrammar's "no indentation" value. */
const NO_INDENT = -1;

export class GrammarCompileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GrammarCompileError";
  }
}

export class GrammarCompiler {
  private readonly cache = new Map<string, Promise<CompiledGrammar>>();
  compiles = 0;

  private constructor(private readonly xg: XGrammarModule, private readonly compiler: XGrammarCompiler, readonly vocabSize: number) {}

  /** Prepares the vocabulary (~150 ms for Phi-4's 100,352 tokens). */
  static async create(tokenizer: Phi4Tokenizer, stopTokenIds: number[]): Promise<GrammarCompiler> {
    const xg = loadXGrammar();
    const info = await xg.TokenizerInfo.createTokenizerInfo(byteLevelVocabulary(tokenizer), "byte_level", false, tokenizer.vocabSize, stopTokenIds);
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info);
    return new GrammarCompiler(xg, compiler, tokenizer.vocabSize);
  }

  compile(spec: GrammarSpec): Promise<CompiledGrammar> {
    const key = specKey(spec);
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key); // most recently used goes last
      this.cache.set(key, hit);
      return hit;
    }
    const compiled = this.compileNow(spec);
    compiled.catch(() => this.cache.delete(key));
    this.cache.set(key, compiled);
    while (this.cache.size > GRAMMAR_CACHE_SIZE) {
      const [oldest, evicted] = this.cache.entries().next().value!;
      this.cache.delete(oldest);
      void evicted.then((g) => g.dispose(), () => undefined);
    }
    return compiled;
  }

  /** A fresh matcher (one per choice) over a compiled grammar. */
  async constraint(compiled: CompiledGrammar): Promise<TokenConstraint> {
    return new TokenConstraint(await this.xg.GrammarMatcher.createGrammarMatcher(compiled), this.xg.binding(), this.vocabSize);
  }

  private async compileNow(spec: GrammarSpec): Promise<CompiledGrammar> {
    this.compiles++;
    try {
      if (spec.kind === "json") {
        return await this.compiler.compileJSONSchema(JSON.stringify(spec.schema), false, NO_INDENT, SEPARATORS, spec.strict);
      }
      return await this.compiler.compileStructuralTag({ type: "structural_tag", format: await this.toolCallFormat(spec) });
    } catch (err) {
      throw new GrammarCompileError(`the grammar engine could not compile this schema: ${String((err as Error)?.message ?? err)}`);
    }
  }

  /** A JSON schema as an EBNF grammar (root rule `root`), for embedding in a structural tag. */
  private async jsonGrammar(json: { schema: unknown; strict: boolean }): Promise<string> {
    const grammar = await this.xg.Grammar.fromJSONSchema(JSON.stringify(json.schema), false, NO_INDENT, SEPARATORS, json.strict);
    try {
      return grammar.toString();
    } finally {
      grammar.dispose();
    }
  }

  private async toolCallFormat(spec: GrammarSpec & { kind: "tool_calls" }): Promise<StructuralTagFormat> {
    const tags: TagFormat[] = [];
    for (const f of spec.functions) {
      tags.push({
        type: "tag",
        begin: callHead(f.name),
        content: { type: "grammar", grammar: await this.jsonGrammar({ schema: f.parameters, strict: f.strict }) },
        end: CALL_TAIL,
      });
    }
    if (spec.mode === "triggered") {
      return { type: "triggered_tags", triggers: [TOOL_CALL_OPEN], tags, at_least_one: false, stop_after_first: spec.single };
    }
    const calls: StructuralTagFormat = { type: "tags_with_separator", tags, separator: CALL_SEPARATOR, at_least_one: true, stop_after_first: spec.single };
    if (!spec.orJson) return calls;
    return { type: "or", elements: [calls, { type: "grammar", grammar: await this.jsonGrammar(spec.orJson) }] };
  }
}
