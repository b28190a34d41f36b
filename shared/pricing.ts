/** Price per million tokens, in dollars (docs/pricing.md; configurable per deployment). */
export interface Prices {
  inputPerMTok: number;
  outputPerMTok: number;
}

export const DEFAULT_PRICES: Prices = { inputPerMTok: 0.07, outputPerMTok: 0.14 };

/** `usage.estimated_cost` in dollars, rounded to 1e-10 so float noise never shows in a response. */
export function estimatedCost(promptTokens: number, completionTokens: number, prices: Prices = DEFAULT_PRICES): number {
  const dollars = (promptTokens * prices.inputPerMTok + completionTokens * prices.outputPerMTok) / 1_000_000;
  return Math.round(dollars * 1e10) / 1e10;
}

export function pricesFromVars(vars: { PRICE_INPUT_PER_MTOK?: string; PRICE_OUTPUT_PER_MTOK?: string }): Prices {
  const input = Number(vars.PRICE_INPUT_PER_MTOK ?? DEFAULT_PRICES.inputPerMTok);
  const output = Number(vars.PRICE_OUTPUT_PER_MTOK ?? DEFAULT_PRICES.outputPerMTok);
  if (!Number.isFinite(input) || input < 0 || !Number.isFinite(output) || output < 0) {
    throw new Error("PRICE_INPUT_PER_MTOK and PRICE_OUTPUT_PER_MTOK must be non-negative numbers");
  }
  return { inputPerMTok: input, outputPerMTok: output };
}
