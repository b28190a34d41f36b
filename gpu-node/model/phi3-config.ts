/** The architecture numbers of a Phi-3-family decoder (Phi-4 is one). One source for builder, converter, runner, reference. */

export interface Phi3Config {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Tokens of context the model serves (prompt + completion). */
  contextLength: number;
  /** Generation stops on any of these (Phi-4: <|im_end|>, <|endoftext|>). */
  eosTokenIds: number[];
  padTokenId: number;
}

/** microsoft/phi-4 (docs/phi4-model.md). */
export const PHI4_CONFIG: Phi3Config = {
  vocabSize: 100_352,
  hiddenSize: 5120,
  numLayers: 40,
  numHeads: 40,
  numKvHeads: 10,
  headDim: 128,
  intermediateSize: 17_920,
  rmsNormEps: 1e-5,
  ropeTheta: 250_000,
  contextLength: 16_384,
  eosTokenIds: [100_265, 100_257],
  padTokenId: 100_349,
};
