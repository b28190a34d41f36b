/**
 * What a request's output must look like, as a value: JSON matching a schema (`response_format`), or
 * tool calls (tool-call-format.ts) whose arguments match their function's schema — forced from the
 * first token (`required`, a named function) or allowed after free text once a call begins (`auto`).
 * Its JSON text is the compile cache's key.
 */
import type { ChatRequest } from "../../shared/request-schema.ts";

type Schema = Record<string, unknown> | boolean;

export type GrammarSpec =
  | { kind: "json"; schema: Schema; strict: boolean }
  | {
      kind: "tool_calls";
      functions: Array<{ name: string; parameters: Schema; strict: boolean }>;
      /** forced: the output is calls only; triggered: free text, and a call once "<tool_call>" appears. */
      mode: "forced" | "triggered";
      /** At most one call (a named function, or parallel_tool_calls false). */
      single: boolean;
      /** With `auto` and a JSON response_format: the output is either calls or that JSON. */
      orJson: { schema: Schema; strict: boolean } | null;
    };

function jsonOf(request: ChatRequest): { schema: Schema; strict: boolean } | null {
  const f = request.responseFormat;
  if (f.type === "json_object") return { schema: { type: "object" }, strict: false };
  if (f.type === "json_schema") return { schema: f.schema, strict: f.strict };
  return null;
}

/** null: unconstrained. */
export function grammarSpecOf(request: ChatRequest): GrammarSpec | null {
  const json = jsonOf(request);
  const choice = request.toolChoice;
  if (request.tools.length > 0 && choice !== "none") {
    const named = typeof choice === "object" ? choice.name : null;
    const functions = request.tools
      .filter((t) => named === null || t.name === named)
      .map((t) => ({ name: t.name, parameters: t.parameters, strict: t.strict }));
    const forced = choice === "required" || named !== null;
    return {
      kind: "tool_calls",
      functions,
      mode: forced || json ? "forced" : "triggered",
      single: named !== null || !request.parallelToolCalls,
      orJson: forced ? null : json,
    };
  }
  return json ? { kind: "json", ...json } : null;
}

/** Stable text of a spec: the cache key. */
export function specKey(spec: GrammarSpec): string {
  return JSON.stringify(spec);
}
