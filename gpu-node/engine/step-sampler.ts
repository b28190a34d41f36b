/**
 * Sampling for a whole step: takes the forward pass's output for the batch and draws one token for
 * every row that reached the end of its known tokens.
 *
 *   per row:   logit_bias + penalties → constraint mask            (logit-adjustments.ts, logits-constraint.ts)
 *   batch:     rank every row that can draw from candidates at once (the runner's own candidates, or the
 *              onnxruntime preselector over the adjusted rows: logits-preselector.ts)
 *   per row:   draw with the row's counter-based uniform            (sampler.ts, prng.ts)
 *
 * Whether a row can draw from candidates is one decision (drawsFromCandidates) used both to tell the
 * runner what to return (`needs`) and to pick the rows to rank. The preselector is built on the first
 * step that can use it, on the configured threads; if onnxruntime cannot build or run it, rows are
 * scanned in JS instead (the same tokens, only slower).
 */
import { LogitsNeed, type BatchRow, type LogitAdjustments, type PreselectedCandidates, type RunnerOutput } from "../runner/step-runner.ts";
import { CandidateDraw, drawsFromCandidatesOrTail, FULL_ROW, TAIL } from "./candidate-draw.ts";
import { maskDisallowed, type LogitsConstraint } from "./logits-constraint.ts";
import { applyBiasAndPenalties, sparseAdjustments } from "./logit-adjustments.ts";
import { LogitsPreselector, PRESELECT_K } from "./logits-preselector.ts";
import { uniformFromWords } from "./prng.ts";
import { drawsFromCandidates, Sampler } from "./sampler.ts";
import type { SampleResult, SamplingParams } from "./sampling-params.ts";
import type { ScheduledRow } from "./scheduler.ts";
import type { Sequence } from "./sequence.ts";
import type { StepTimings } from "./step-timings.ts";
import type { TokenCounts } from "./token-counts.ts";

/** What sampling reads about one choice (one object per choice, reused every step). */
export interface ChoiceSampling {
  readonly params: SamplingParams;
  /** Penalty state; the request group adds each accepted token. */
  readonly counts: TokenCounts;
  /** Structured outputs: the allowed next tokens (null: unconstrained); told each accepted token by the request group. */
  readonly constraint: LogitsConstraint | null;
  /** The request's seed as two words, for the counter-based uniform of each draw. */
  readonly seedLo: number;
  readonly seedHi: number;
}

export class StepSampler {
  private readonly sampler: Sampler;
  /** Built on the first step that can use it; null when onnxruntime could not build it (the JS scan is used). */
  private preselector: LogitsPreselector | null | undefined;
  /** Per step, reused: each row's result (null: nothing sampled), and the rows to draw, in batch order. */
  private readonly results: Array<SampleResult | null> = [];
  private readonly drawRows: number[] = [];
  /** Per step: whether each draw row reads the runner's candidates (1) or the preselector's (0). */
  private fromRunner = new Uint8Array(64);
  /** A vocabulary-sized row for drawing from the runner's candidates (see drawFromRunnerCandidates). */
  private candidateRow: Float32Array | null = null;
  /** Plain sampling from the runner's candidates, the whole row only when the draw lands in its tail. */
  private readonly candidateDraw: CandidateDraw;
  /** Per step: draw rows waiting for their whole row (TAIL or FULL_ROW from candidateDraw), and which. */
  private readonly pending: number[] = [];
  private readonly pendingKind: number[] = [];
  /** Each sequence's adjustment arrays, reused from step to step (dropped with the sequence). */
  private readonly adjustScratch = new WeakMap<Sequence, LogitAdjustments>();
  /** Vocabulary-sized scratch for sparseAdjustments (-1 everywhere between calls). */
  private readonly adjustSlots: Int32Array;

  constructor(
    private readonly vocabSize: number,
    /** onnxruntime intra-op threads for the preselector. */
    private readonly threads: number,
    /** The live choice behind a sequence; undefined once its request is gone. */
    private readonly samplingOf: (seq: Sequence) => ChoiceSampling | undefined,
    private readonly timings: StepTimings,
  ) {
    this.sampler = new Sampler(vocabSize);
    this.candidateDraw = new CandidateDraw(vocabSize);
    this.adjustSlots = new Int32Array(vocabSize).fill(-1);
  }

  /** What a scheduled row needs back from the forward pass (BatchRow.needs). */
  needs(row: ScheduledRow): LogitsNeed {
    const { seq } = row;
    if (seq.numComputedTokens + row.numTokens < seq.numTokens) return LogitsNeed.None;
    const s = this.samplingOf(seq);
    return s === undefined ? LogitsNeed.None : this.needOf(s);
  }

  /**
   * Fills what the runner needs to know about a scheduled row: `needs`, and for a Candidates row its
   * bias/penalties as sparse entries and its temperature, when the runner ranks candidates itself
   * (`ranksCandidates`; a runner of whole rows gets neither: the sampler adjusts those rows itself).
   */
  describe(row: ScheduledRow, into: BatchRow, ranksCandidates = true): void {
    const needs = this.needs(row);
    into.needs = needs;
    into.adjust = null;
    into.temperature = 1;
    if (needs !== LogitsNeed.Candidates || !ranksCandidates) return;
    const s = this.samplingOf(row.seq)!;
    const adjust = sparseAdjustments(s.params, s.counts, this.vocabSize, this.adjustSlots, this.adjustScratch.get(row.seq) ?? null);
    if (adjust !== null) this.adjustScratch.set(row.seq, adjust);
    into.adjust = adjust;
    into.temperature = s.params.temperature;
  }

  /**
   * Draws a token for each row whose sequence has all its tokens computed (after Scheduler.postprocess)
   * and is still live. Returns one entry per row, null where nothing was drawn; valid until the next call.
   * Rows of `output.logits` are modified in place.
   */
  async sample(rows: readonly ScheduledRow[], output: RunnerOutput): Promise<ReadonlyArray<SampleResult | null>> {
    const started = performance.now();
    const V = this.vocabSize;
    const results = this.results;
    const drawRows = this.drawRows;
    results.length = rows.length;
    drawRows.length = 0;
    if (this.fromRunner.length < rows.length) this.fromRunner = new Uint8Array(rows.length * 2);
    if (output.candidates !== undefined) checkRunnerCandidates(output.candidates);
    const logits = output.logits ?? EMPTY;
    let rankable = 0;
    let logprobRows = 0;
    for (let r = 0; r < rows.length; r++) {
      results[r] = null;
      const s = this.drawable(rows[r].seq);
      if (s === undefined) continue;
      drawRows.push(r);
      // The runner ranked the rows it was asked candidates for (after their bias and penalties): they draw from those.
      const runnerRanks = output.candidates !== undefined && this.needOf(s) === LogitsNeed.Candidates;
      this.fromRunner[r] = runnerRanks ? 1 : 0;
      if (runnerRanks) continue;
      // Bias, penalties and the constraint first (in place), so one preselector run ranks every row that can use it.
      this.adjust(logits, r * V, s);
      if (drawsFromCandidates(s.params, PRESELECT_K, V)) {
        rankable++;
        if (s.params.logprobs) logprobRows++;
      }
    }
    const preselected = await this.preselect(logits, rows.length, rankable, logprobRows);
    const pending = this.pending;
    pending.length = 0;
    this.pendingKind.length = 0;
    for (const r of drawRows) {
      const seq = rows[r].seq;
      const s = this.drawable(seq); // aborted while the preselector ran: skip
      if (s === undefined) continue;
      const u = uniformFromWords(s.seedLo, s.seedHi, seq.choiceIndex, seq.numOutputTokens);
      if (this.fromRunner[r] === 0) results[r] = this.sampler.draw(logits, r * V, s.params, u, preselected, r);
      else if (drawsFromCandidates(s.params, PRESELECT_K, V)) results[r] = this.drawFromRunnerCandidates(output.candidates!, r, s.params, u);
      else {
        const c = output.candidates!;
        const token = this.candidateDraw.tryCandidates(c, r, s.params, u);
        if (token >= 0) results[r] = this.candidateDraw.result(c, r, token, candidateValue(c, r, token), s.params);
        else {
          pending.push(r);
          this.pendingKind.push(token);
        }
      }
    }
    if (pending.length > 0) await this.drawFromWholeRows(rows, output);
    this.timings.samplingDone(started);
    return results;
  }

  /**
   * The Candidates rows whose draw needs the whole row: fetched from the runner in one go, adjusted on the
   * host as any full row is, then drawn (the tail walk, or the host sampler where top_p/min_p needed the row).
   */
  private async drawFromWholeRows(rows: readonly ScheduledRow[], output: RunnerOutput): Promise<void> {
    const V = this.vocabSize;
    if (output.fetchRows === undefined) throw new RangeError("the runner returned candidates without fetchRows, and a draw needs its whole row");
    const c = output.candidates!;
    const fetched = await output.fetchRows(this.pending);
    for (let i = 0; i < this.pending.length; i++) {
      const r = this.pending[i];
      const seq = rows[r].seq;
      const s = this.drawable(seq);
      if (s === undefined) continue;
      const u = uniformFromWords(s.seedLo, s.seedHi, seq.choiceIndex, seq.numOutputTokens);
      this.adjust(fetched, i * V, s);
      if (this.pendingKind[i] === FULL_ROW) this.results[r] = this.sampler.draw(fetched, i * V, s.params, u);
      else if (this.pendingKind[i] === TAIL) {
        const token = this.candidateDraw.drawTail(fetched, i * V, c, r, s.params, u);
        this.results[r] = this.candidateDraw.result(c, r, token, fetched[i * V + token], s.params);
      }
    }
  }

  /** Frees the preselector's onnxruntime session. */
  async release(): Promise<void> {
    const preselector = this.preselector;
    this.preselector = null;
    await preselector?.release();
  }

  /** A sampled row's need: candidates when its draw can use them and nothing adjusts its logits before ranking. */
  private needOf(s: ChoiceSampling): LogitsNeed {
    if (s.constraint !== null) return LogitsNeed.FullRow;
    const V = this.vocabSize;
    return drawsFromCandidates(s.params, PRESELECT_K, V) || drawsFromCandidatesOrTail(s.params, PRESELECT_K, V)
      ? LogitsNeed.Candidates
      : LogitsNeed.FullRow;
  }

  /**
   * A row drawn from the runner's candidates alone, never from its logits row (a device runner need not
   * return it): the draw reads a row holding just the candidates (-Infinity elsewhere). The best k of
   * that row are the best k of the real one, and logprobs take the runner's log-sum-exp, so the result
   * is the one the full row gives.
   */
  private drawFromRunnerCandidates(c: PreselectedCandidates, r: number, params: SamplingParams, u: number): SampleResult {
    const row = (this.candidateRow ??= new Float32Array(this.vocabSize).fill(-Infinity));
    const base = r * c.k;
    for (let i = 0; i < c.k; i++) row[c.ids[base + i]] = c.values[base + i];
    const result = this.sampler.draw(row, 0, params, u, c, r, true);
    for (let i = 0; i < c.k; i++) row[c.ids[base + i]] = -Infinity;
    return result;
  }

  private drawable(seq: Sequence): ChoiceSampling | undefined {
    if (seq.isFinished || seq.numComputedTokens < seq.numTokens) return undefined;
    return this.samplingOf(seq);
  }

  /** The one place a row's logits change before ranking: bias, penalties, then the constraint's mask. */
  private adjust(logits: Float32Array, offset: number, s: ChoiceSampling): void {
    if (offset < 0 || offset + this.vocabSize > logits.length) {
      throw new RangeError(`the runner returned no logits for the row at ${offset}, which needs its full row`);
    }
    applyBiasAndPenalties(logits, offset, this.vocabSize, s.params, s.counts);
    if (s.constraint !== null) maskDisallowed(logits, offset, this.vocabSize, s.constraint.allowedTokens());
  }

  /**
   * Ranks the batch's rows in onnxruntime when at least one row can draw from the candidates. The
   * log-sum-exp (for logprobs) costs about as much as the JS normaliser on a dozen rows, so it is asked
   * for only when a third of the batch wants logprobs; other rows sum their normaliser in JS.
   */
  private async preselect(logits: Float32Array, rows: number, rankable: number, logprobRows: number): Promise<PreselectedCandidates | null> {
    if (rankable === 0) return null;
    if (this.preselector === undefined) {
      try {
        this.preselector = await LogitsPreselector.create(this.vocabSize, this.threads);
      } catch {
        this.preselector = null;
      }
    }
    if (this.preselector === null) return null;
    try {
      return await this.preselector.run(logits, rows, logprobRows * 3 >= rows);
    } catch {
      return null; // the full-row scan gives the same tokens
    }
  }
}

const EMPTY = new Float32Array(0);

/** A runner's own candidates must cover every draw that reads them: k ≥ PRESELECT_K, with the log-sum-exp for logprobs. */
function checkRunnerCandidates(c: PreselectedCandidates): void {
  if (c.k < PRESELECT_K) throw new RangeError(`runner candidates: k is ${c.k}, at least ${PRESELECT_K} are needed`);
  if (c.logSumExp === null) throw new RangeError("runner candidates: logSumExp is missing");
}

/** Row r's candidate value of `token` (a token drawn from its candidates). */
function candidateValue(c: PreselectedCandidates, r: number, token: number): number {
  for (let i = r * c.k; i < (r + 1) * c.k; i++) if (c.ids[i] === token) return c.values[i];
  return NaN;
}
