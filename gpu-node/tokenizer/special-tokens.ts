/** Phi-4's special tokens (docs/tokenizer.md): cl100k_base's five plus Phi-4's own, 100256…100351. */

export const ENDOFTEXT = 100_257;
export const IM_START = 100_264;
export const IM_END = 100_265;
export const IM_SEP = 100_266;
export const PAD = 100_349;
/** Generation stops on either. */
export const STOP_TOKEN_IDS = [IM_END, ENDOFTEXT] as const;

function buildSpecialTokens(): Map<string, number> {
  const named: Array<[string, number]> = [
    ["<|dummy_0|>", 100_256],
    ["<|endoftext|>", ENDOFTEXT],
    ["<|fim_prefix|>", 100_258],
    ["<|fim_middle|>", 100_259],
    ["<|fim_suffix|>", 100_260],
    ["<|dummy_1|>", 100_261],
    ["<|dummy_2|>", 100_262],
    ["<|dummy_3|>", 100_263],
    ["<|im_start|>", IM_START],
    ["<|im_end|>", IM_END],
    ["<|im_sep|>", IM_SEP],
    ["<|endofprompt|>", 100_276],
  ];
  // <|dummy_4|> … <|dummy_87|> fill the remaining ids 100267…100351 in order, skipping 100276.
  let dummy = 4;
  for (let id = 100_267; id <= 100_351; id++) {
    if (id === 100_276) continue;
    named.push([`<|dummy_${dummy++}|>`, id]);
  }
  return new Map(named);
}

/** Token text → id, for every special token. */
export const SPECIAL_TOKENS: ReadonlyMap<string, number> = buildSpecialTokens();
/** The first id that is not a cl100k_base rank. */
export const FIRST_SPECIAL_ID = 100_256;
