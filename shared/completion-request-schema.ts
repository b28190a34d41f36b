/**
 * The legacy `POST /v1/completions` request: a raw prompt (text, several texts, token ids, or several
 * lists of token ids) and the same generation settings as chat. It becomes the same job as a chat
 * request, with `prompts` set instead of `messages`.
 */
import { z } from "zod";
import { ApiError } from "./errors.ts";
import { MAX_LEGACY_LOGPROBS, MAX_N, VOCAB_SIZE } from "./limits.ts";
import { generationFields, generationSettings, issueError, type ChatRequest, type ParseResult } from "./request-schema.ts";

z.config({ jitless: true });

/** OpenAI's default for this endpoint (chat's is "until the context ends"). */
export const LEGACY_DEFAULT_MAX_TOKENS = 16;

const tokenId = z.number({ error: "token ids must be integers" }).int({ error: "token ids must be integers" })
  .min(0, { error: "token ids must not be negative" }).max(VOCAB_SIZE - 1, { error: `token ids must be below ${VOCAB_SIZE}` });

const prompt = z.union([
  z.string(),
  z.array(z.string()).min(1),
  z.array(tokenId).min(1),
  z.array(z.array(tokenId).min(1)).min(1),
], { error: "'prompt' must be a string, an array of strings, an array of token ids, or an array of such arrays" });

const body = z.object({
  ...generationFields,
  prompt: prompt.nullish(),
  echo: z.boolean({ error: "'echo' must be a boolean" }).nullish(),
  logprobs: z.number({ error: "'logprobs' must be an integer" }).int({ error: "'logprobs' must be an integer" })
    .min(0).max(MAX_LEGACY_LOGPROBS, { error: `'logprobs' must be an integer between 0 and ${MAX_LEGACY_LOGPROBS}` }).nullish(),
  suffix: z.string({ error: "'suffix' must be a string" }).nullish(),
  best_of: z.number({ error: "'best_of' must be an integer" }).int({ error: "'best_of' must be an integer" }).min(1).nullish(),
}, { error: "the request body must be a JSON object" });

function promptsOf(p: z.infer<typeof prompt>): Array<string | number[]> {
  if (typeof p === "string") return [p];
  if (p.length > 0 && typeof p[0] === "number") return [p as number[]];
  return p as Array<string | number[]>;
}

export function parseCompletionRequest(input: unknown): ParseResult {
  const parsed = body.safeParse(input);
  if (!parsed.success) return { ok: false, error: issueError(parsed.error.issues[0]) };
  const b = parsed.data;
  if (b.prompt == null) return { ok: false, error: ApiError.invalid("'prompt' is required", "prompt", "missing_required_parameter") };
  const prompts = promptsOf(b.prompt);
  const empty = prompts.findIndex((p) => p.length === 0);
  if (empty >= 0) return { ok: false, error: ApiError.invalid("a prompt must not be empty", typeof b.prompt === "string" ? "prompt" : `prompt[${empty}]`) };
  if (b.suffix != null && b.suffix !== "") {
    return { ok: false, error: ApiError.invalid("'suffix' is not supported: Phi-4 is served without fill-in-the-middle", "suffix", "unsupported_parameter") };
  }
  const settings = generationSettings(b);
  if (b.best_of != null && b.best_of !== settings.n) {
    return { ok: false, error: ApiError.invalid("'best_of' other than 'n' is not supported (choices are never ranked server-side)", "best_of", "unsupported_parameter") };
  }
  if (prompts.length * settings.n > MAX_N) {
    return { ok: false, error: ApiError.invalid(`prompts × n must be at most ${MAX_N} (got ${prompts.length} × ${settings.n})`, "prompt") };
  }
  const logprobs = b.logprobs ?? null;
  if (b.echo && logprobs !== null) {
    return { ok: false, error: ApiError.invalid("'echo' with 'logprobs' is not supported (the prompt's logprobs are not computed)", "echo", "unsupported_parameter") };
  }
  if (b.stream_options != null && b.stream !== true) {
    return { ok: false, error: ApiError.invalid("'stream_options' is only allowed when 'stream' is true", "stream_options") };
  }
  const request: ChatRequest = {
    ...settings,
    maxTokens: settings.maxTokens ?? LEGACY_DEFAULT_MAX_TOKENS,
    messages: [],
    logprobs: logprobs !== null,
    topLogprobs: logprobs ?? 0,
    tools: [],
    toolChoice: "none",
    parallelToolCalls: true,
    responseFormat: { type: "text" },
    prompts,
    echo: b.echo ?? false,
  };
  return { ok: true, request };
}
