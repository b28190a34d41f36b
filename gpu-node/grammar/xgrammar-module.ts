/**
 * Loads XGrammar's WebAssembly build (`@mlc-ai/web-xgrammar`) in Node. Its npm file is a UMD bundle
 * inside an ESM package: imported as ESM it finds neither `require` nor `__filename` and cannot find
 * itself. Evaluated as the CommonJS module it was built as, it loads (and its inline WebAssembly with it).
 *
 * The package only offers the next-token mask as a Promise; the engine's sampler needs it in the
 * middle of a synchronous pass over the batch. The bundle's own binding has the synchronous calls
 * (the Promise only awaits the module's start-up), so loading also exposes that binding, once started,
 * as `binding()`. One instance per thread: the engine thread loads its own.
 */
import { readFileSync } from "node:fs";
import { createRequire, Module } from "node:module";
import path from "node:path";
import type * as XGrammar from "@mlc-ai/web-xgrammar";

/** What the engine calls on the started WebAssembly module directly. */
export interface XGrammarBinding {
  /** A typed view over an Emscripten int vector's memory (valid until the vector is deleted). */
  vecIntToView(vector: unknown): Int32Array;
}

export type XGrammarModule = typeof XGrammar & { binding(): XGrammarBinding };

interface CommonJsModule {
  filename: string;
  paths: string[];
  exports: unknown;
  _compile(source: string, filename: string): void;
}

type ModuleInternals = (new (id: string) => CommonJsModule) & { _nodeModulePaths(dir: string): string[] };

/** Where the bundle defines its binding; the accessor is added right after it. */
const BINDING_ANCHOR = "let binding = null;";

let loaded: XGrammarModule | undefined;

export function loadXGrammar(): XGrammarModule {
  if (loaded) return loaded;
  const file = createRequire(import.meta.url).resolve("@mlc-ai/web-xgrammar");
  let source = readFileSync(file, "utf8");
  const at = source.indexOf(BINDING_ANCHOR);
  if (at < 0) throw new Error(`@mlc-ai/web-xgrammar at ${file} has changed shape (no "${BINDING_ANCHOR}"); pin the version in package.json`);
  const end = at + BINDING_ANCHOR.length;
  source = `${source.slice(0, end)} exports.binding = () => { if (binding == null) throw new Error("xgrammar is not started"); return binding; };${source.slice(end)}`;
  const Internals = Module as unknown as ModuleInternals;
  const mod = new Internals(file);
  mod.filename = file;
  mod.paths = Internals._nodeModulePaths(path.dirname(file));
  mod._compile(source, file);
  loaded = mod.exports as XGrammarModule;
  return loaded;
}

/** Whether this thread has loaded XGrammar (the host thread of a GPU node never should: the engine thread does). */
export function isXGrammarLoaded(): boolean {
  return loaded !== undefined;
}
