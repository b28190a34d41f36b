/**
 * The boundary between the step loop and whatever runs the model: the rows a forward pass takes, and
 * what it hands back for sampling. The CPU ModelRunner returns every row's full logits; a runner that
 * ranks on its device may return each sampled row's top candidates (and log-sum-exp) instead, and the
 * full row only where the row's sampling needs the whole vocabulary (BatchRow.needs says which).
 */
import type { Phi3Config } from "../model/phi3-config.ts";

/** What sampling needs back from one row of a forward pass. */
export const enum LogitsNeed {
  /** A prefill chunk short of the prompt's end: nothing is sampled from it. */
  None = 0,
  /**
   * The row's draw and logprobs come from its top-ranked candidates of the logits after `adjust` (see
   * PreselectedCandidates), or, for a row without top_k, usually do: when its uniform falls beyond the
   * candidates' mass the sampler fetches the whole row (RunnerOutput.fetchRows).
   */
  Candidates = 1,
  /** The whole row: sampling scans the vocabulary, or a constraint changes logits before ranking. */
  FullRow = 2,
}

/**
 * A row's logit_bias and penalties as sparse entries (logit-adjustments.ts's semantics), each token id at
 * most once: x → (y > 0 ? y / penalty : y · penalty) + addend, where y = x + bias. Entries [0, count).
 */
export interface LogitAdjustments {
  count: number;
  ids: Int32Array;
  bias: Float32Array;
  penalty: Float32Array;
  addend: Float32Array;
}

export interface BatchRow {
  tokens: ArrayLike<number>;
  pastLen: number;
  blockTable: ArrayLike<number>;
  /** Set by the step loop; a runner that returns full rows for every row may ignore it (absent: FullRow). */
  needs?: LogitsNeed;
  /** For a Candidates row: what changes its logits before ranking (absent or null: nothing). */
  adjust?: LogitAdjustments | null;
  /** For a Candidates row: its sampling temperature (absent: 1), for the candidates' mass (scaledLogSumExp). */
  temperature?: number;
}

/** Ranked candidates of a batch's logits rows: row r's are at [r·k, r·k + k), best first, ties lower id first. */
export interface PreselectedCandidates {
  k: number;
  values: Float32Array;
  ids: Int32Array;
  /** log Σ exp(logit) over each full row, or null when the run did not compute it. */
  logSumExp: Float64Array | null;
  /** log Σ exp(logit / T) over each full row at the row's temperature (BatchRow.temperature); absent when not computed. */
  scaledLogSumExp?: Float64Array | null;
}

/**
 * What a forward pass hands the sampler (StepSampler.sample).
 * - `logits`: [rows × vocab] row-major, batch order. Rows asked FullRow must hold their logits; rows
 *   asked Candidates or None may hold anything when `candidates` is given (the sampler never reads them).
 *   The sampler writes bias, penalties and constraint masks into its rows.
 * - `candidates`: the runner's own ranking of each row's logits after its BatchRow.adjust (raw where it
 *   has none), row r at [r·k, r·k + k) in batch order, with k ≥ PRESELECT_K (64) and `logSumExp` for
 *   every row (of the adjusted row); read only for rows asked Candidates.
 *   Without it, the sampler ranks eligible rows itself (logits-preselector.ts).
 */
export interface RunnerOutput {
  logits?: Float32Array;
  candidates?: PreselectedCandidates;
  /**
   * The whole rows `rows` (batch indices) of this step, [rows.length × vocab], RAW (before `adjust`), for
   * Candidates rows whose draw fell beyond their candidates; valid until the runner's next `run`.
   */
  fetchRows?: (rows: ArrayLike<number>) => Promise<Float32Array>;
}

export interface StepStats {
  totalMs: number;
  sessionRunMs: number;
  outputBytes: number;
  runs: number;
}

/** The model runner as the step loop uses it (model-runner.ts is the CPU one). */
export interface StepRunner {
  readonly config: Phi3Config;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly kvBytesPerBlock: number;
  /**
   * Whether `run` returns candidates ranked after each row's BatchRow.adjust at its temperature (a device
   * runner); then the step loop fills those fields. Absent: the runner returns whole rows.
   */
  readonly ranksCandidates?: boolean;
  /** Timings of the last `run`. */
  readonly lastStepStats: StepStats;
  /** One forward pass over the batch; writes the rows' new K/V into their blocks. */
  run(rows: BatchRow[]): Promise<RunnerOutput>;
  release(): Promise<void>;
}

/** The cache geometry and model a row is checked against. */
export type RunnerGeometry = Pick<StepRunner, "config" | "numBlocks" | "blockSize">;

/** A clear error (which row, what is wrong) before a bad row can reach onnxruntime as an opaque failure. */
export function checkBatchRow(row: BatchRow, r: number, { config, numBlocks, blockSize }: RunnerGeometry): void {
  const n = row.tokens.length;
  if (n < 1) throw new Error(`row ${r}: no new tokens`);
  if (!Number.isInteger(row.pastLen) || row.pastLen < 0) throw new Error(`row ${r}: pastLen ${row.pastLen} is not a non-negative integer`);
  const total = row.pastLen + n;
  if (total > config.contextLength) throw new Error(`row ${r}: ${total} tokens exceed the context length ${config.contextLength}`);
  const needed = Math.ceil(total / blockSize);
  if (row.blockTable.length < needed) throw new Error(`row ${r}: block table has ${row.blockTable.length} blocks, ${needed} needed for ${total} tokens`);
  for (let i = 0; i < needed; i++) {
    const b = row.blockTable[i];
    if (!isBlockId(b, numBlocks)) throw new Error(`row ${r}: block id ${b} outside 0..${numBlocks - 1}`);
  }
  for (let i = 0; i < n; i++) {
    const t = row.tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) throw new Error(`row ${r}: token ${t} outside the vocabulary 0..${config.vocabSize - 1}`);
  }
}

export function isBlockId(b: number, numBlocks: number): boolean {
  return Number.isInteger(b) && b >= 0 && b < numBlocks;
}
