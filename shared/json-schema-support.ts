/**
 * Which JSON Schemas the GPU node's grammar engine (XGrammar) can turn into a token-level constraint.
 * Checked at the edge, so a schema it would silently loosen (XGrammar ignores keywords it does not
 * know) or could not compile never reaches the queue. The answer names every unsupported keyword.
 *
 * Every keyword listed here is compiled against the real engine in the node's grammar tests.
 */

/** Keywords XGrammar turns into grammar rules. */
const CONSTRAINING = new Set([
  "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
  "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "minLength", "maxLength",
  "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format",
]);

/** Keywords that only describe (they change nothing in what is valid). */
const ANNOTATIONS = new Set([
  "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
]);

const TYPES = new Set(["object", "array", "string", "number", "integer", "boolean", "null"]);

/** `format` values XGrammar knows; any other would be silently ignored. */
const FORMATS = new Set([
  "email", "date", "time", "date-time", "duration", "uuid", "ipv4", "ipv6", "hostname", "uri", "uri-reference",
  "uri-template", "json-pointer", "relative-json-pointer",
]);

/**
 * Regular-expression features XGrammar's regex converter refuses (it would fail the compile): found by
 * scanning the pattern, escapes skipped pairwise so `\\b` (a literal backslash, then b) is not `\b`.
 */
function unsupportedRegexFeature(pattern: string): string | null {
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") {
      const next = pattern[i + 1] ?? "";
      if (next === "b" || next === "B") return "word boundaries (\\b, \\B)";
      if (/[1-9]/.test(next) || next === "k") return "backreferences";
      if (next === "p" || next === "P") return "Unicode property escapes (\\p{…})";
      i++;
    } else if (c === "(" && pattern[i + 1] === "?") {
      const look = pattern.slice(i + 2, i + 4);
      if (look[0] === "=" || look[0] === "!" || look === "<=" || look === "<!") return "lookaround assertions";
    }
  }
  return null;
}

/** Deepest nesting accepted (XGrammar recurses once per level). */
export const MAX_SCHEMA_DEPTH = 32;

export interface SchemaProblem {
  /** JSON-pointer-like path inside the schema, e.g. "properties.tags.items". */
  path: string;
  message: string;
}

/**
 * Problems that stop `schema` from being enforced, or an empty list. `unsupported` collects the
 * names of unsupported keywords (each once) so the error message can list them all.
 */
export function checkJsonSchema(schema: unknown): { problems: SchemaProblem[]; unsupported: string[] } {
  const problems: SchemaProblem[] = [];
  const unsupported = new Set<string>();
  const root = schema;

  const at = (path: string, key: string) => (path ? `${path}.${key}` : key);
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  const nonNegativeInt = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0;

  function resolves(ref: string): boolean {
    if (ref === "#") return true;
    const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
    if (!m || !isObject(root)) return false;
    const defs = root[m[1]];
    return isObject(defs) && isObject(defs[m[2].replace(/~1/g, "/").replace(/~0/g, "~")]);
  }

  function walk(node: unknown, path: string, depth: number): void {
    if (typeof node === "boolean") return;
    if (!isObject(node)) {
      problems.push({ path, message: "a schema must be an object or a boolean" });
      return;
    }
    if (depth > MAX_SCHEMA_DEPTH) {
      problems.push({ path, message: `the schema nests deeper than ${MAX_SCHEMA_DEPTH} levels` });
      return;
    }
    for (const [key, value] of Object.entries(node)) {
      const here = at(path, key);
      if (ANNOTATIONS.has(key)) continue;
      if (!CONSTRAINING.has(key)) {
        unsupported.add(key);
        continue;
      }
      switch (key) {
        case "type": {
          const types = Array.isArray(value) ? value : [value];
          if (types.length === 0 || !types.every((t) => typeof t === "string" && TYPES.has(t))) {
            problems.push({ path: here, message: `'type' must be one of ${[...TYPES].join(", ")} (or an array of them)` });
          }
          break;
        }
        case "properties":
        case "$defs":
        case "definitions":
          if (!isObject(value)) problems.push({ path: here, message: `'${key}' must be an object of schemas` });
          else for (const [name, sub] of Object.entries(value)) walk(sub, at(here, name), depth + 1);
          break;
        case "required":
          if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
            problems.push({ path: here, message: "'required' must be an array of property names" });
          }
          break;
        case "additionalProperties":
        case "items":
          walk(value, here, depth + 1);
          break;
        case "prefixItems":
        case "anyOf":
        case "oneOf":
        case "allOf":
          if (!Array.isArray(value) || value.length === 0) problems.push({ path: here, message: `'${key}' must be a non-empty array of schemas` });
          else value.forEach((sub, i) => walk(sub, `${here}[${i}]`, depth + 1));
          break;
        case "enum":
          if (!Array.isArray(value) || value.length === 0) problems.push({ path: here, message: "'enum' must be a non-empty array" });
          break;
        case "const":
          break;
        case "$ref":
          if (typeof value !== "string" || !resolves(value)) {
            problems.push({ path: here, message: "'$ref' must point into this schema's '$defs' or 'definitions' (\"#/$defs/Name\")" });
          }
          break;
        case "minItems":
        case "maxItems":
        case "minLength":
        case "maxLength":
          if (!nonNegativeInt(value)) problems.push({ path: here, message: `'${key}' must be a non-negative integer` });
          break;
        case "minimum":
        case "maximum":
        case "exclusiveMinimum":
        case "exclusiveMaximum":
          if (typeof value !== "number" || !Number.isFinite(value)) problems.push({ path: here, message: `'${key}' must be a number` });
          break;
        case "pattern":
          if (typeof value !== "string") problems.push({ path: here, message: "'pattern' must be a string" });
          else {
            try {
              new RegExp(value, "u");
              const feature = unsupportedRegexFeature(value);
              if (feature) problems.push({ path: here, message: `'pattern' uses ${feature}, which constrained decoding does not support` });
            } catch {
              problems.push({ path: here, message: "'pattern' must be a valid regular expression" });
            }
          }
          break;
        case "format":
          if (typeof value !== "string" || !FORMATS.has(value)) {
            problems.push({ path: here, message: `'format' must be one of ${[...FORMATS].join(", ")}` });
          }
          break;
      }
    }
    if (typeof node.minLength === "number" && typeof node.maxLength === "number" && node.minLength > node.maxLength) {
      problems.push({ path, message: "'minLength' is above 'maxLength'" });
    }
    if (typeof node.minItems === "number" && typeof node.maxItems === "number" && node.minItems > node.maxItems) {
      problems.push({ path, message: "'minItems' is above 'maxItems'" });
    }
    const lower = [node.minimum, node.exclusiveMinimum].filter((v): v is number => typeof v === "number");
    const upper = [node.maximum, node.exclusiveMaximum].filter((v): v is number => typeof v === "number");
    if (lower.length > 0 && upper.length > 0 && Math.max(...lower) > Math.min(...upper)) {
      problems.push({ path, message: "the lower bound is above the upper bound" });
    }
    const types = Array.isArray(node.type) ? node.type : [node.type];
    if (types.includes("integer") && [...lower, ...upper].some((v) => !Number.isInteger(v))) {
      problems.push({ path, message: "bounds of an 'integer' must be whole numbers" });
    }
  }

  if (schema === false) problems.push({ path: "", message: "the schema 'false' accepts nothing" });
  walk(schema, "", 0);
  return { problems, unsupported: [...unsupported] };
}
