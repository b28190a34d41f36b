/**
 * Loads XGrammar's WebAssembly build (`@mlc-ai/web-xgrammar`) in Node. Its npm file is a UMD bundle
 * inside an ESM package: imported as ESM it finds neither `require` nor `__filename` and cannot find
 * itself. Evaluated as the CommonJS module it was built as, it loads (and its inline WebAssembly with it).
 * One instance per thread: the engine thread loads its own.
 */
import { readFileSync } from "node:fs";
import { createRequire, Module } from "node:module";
import path from "node:path";
import type * as XGrammar from "@mlc-ai/web-xgrammar";

export type XGrammarModule = typeof XGrammar;

interface CommonJsModule {
  filename: string;
  paths: string[];
  exports: unknown;
  _compile(source: string, filename: string): void;
}

type ModuleInternals = (new (id: string) => CommonJsModule) & { _nodeModulePaths(dir: string): string[] };

let loaded: XGrammarModule | undefined;

export function loadXGrammar(): XGrammarModule {
  if (loaded) return loaded;
  const file = createRequire(import.meta.url).resolve("@mlc-ai/web-xgrammar");
  const Internals = Module as unknown as ModuleInternals;
  const mod = new Internals(file);
  mod.filename = file;
  mod.paths = Internals._nodeModulePaths(path.dirname(file));
  mod._compile(readFileSync(file, "utf8"), file);
  loaded = mod.exports as XGrammarModule;
  return loaded;
}
