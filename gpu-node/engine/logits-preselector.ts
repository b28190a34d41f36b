/**
 * The logits preselector: a tiny onnxruntime graph that ranks every row of the step's logits at once,
 * on onnxruntime's own intra-op threads (idle while JS samples), instead of a JS scan per row.
 *
 *   logits [B, V] float32 ──TopK(K, largest, sorted)──▶ values [B, K] float32, ids [B, K] int32
 *                      └──Cast(double)──ReduceLogSumExp──▶ logSumExp [B] float64 (only when asked for)
 *
 * The logits buffer is fed as an input (onnxruntime-node does not copy inputs); only the small outputs are
 * copied back. TopK ranks ties lower index first, like the sampler; the log-sum-exp is taken in double so
 * logprobs match the sampler's own normaliser to ~1e-12. The sampler decides per row whether the
 * candidates can stand in for its own full-row scan (drawsFromCandidates in sampler.ts).
 */
import * as ort from "onnxruntime-node";
import { DataType, OnnxGraph } from "../model/graph/onnx-graph.ts";
import type { PreselectedCandidates } from "../runner/step-runner.ts";

/** Candidates kept per row: covers greedy and every top_k up to 64. */
export const PRESELECT_K = 64;

export class LogitsPreselector {
  private constructor(
    readonly vocabSize: number,
    readonly k: number,
    private readonly topOnly: ort.InferenceSession,
    private readonly withLogSumExp: ort.InferenceSession,
  ) {}

  static async create(vocabSize: number, intraOpThreads: number): Promise<LogitsPreselector> {
    const k = Math.min(PRESELECT_K, vocabSize);
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: ["cpu"],
      graphOptimizationLevel: "all",
      intraOpNumThreads: intraOpThreads,
      interOpNumThreads: 1,
      executionMode: "sequential",
      // Its threads must not spin after a run: the model's session and JS need the cores next.
      extra: { session: { intra_op: { allow_spinning: "0" } } },
    };
    // Two graphs rather than one with an optional output: onnxruntime would run the log-sum-exp anyway.
    const topOnly = await ort.InferenceSession.create(preselectGraph(vocabSize, k, false), options);
    const withLse = await ort.InferenceSession.create(preselectGraph(vocabSize, k, true), options);
    return new LogitsPreselector(vocabSize, k, topOnly, withLse);
  }

  /** Ranks rows [0, rows) of `logits` (row-major, vocabSize per row). */
  async run(logits: Float32Array, rows: number, logSumExp: boolean): Promise<PreselectedCandidates> {
    const input = new ort.Tensor("float32", logits.subarray(0, rows * this.vocabSize), [rows, this.vocabSize]);
    const session = logSumExp ? this.withLogSumExp : this.topOnly;
    const out = await session.run({ logits: input });
    return {
      k: this.k,
      values: out.values.data as Float32Array,
      ids: out.ids.data as Int32Array,
      logSumExp: logSumExp ? logSumExpOf(out.row_max.data as Float32Array, out.exp_sum.data as Float64Array) : null,
    };
  }

  async release(): Promise<void> {
    await this.topOnly.release();
    await this.withLogSumExp.release();
  }
}

function preselectGraph(vocabSize: number, k: number, logSumExp: boolean): Uint8Array {
  const g = new OnnxGraph();
  const logits = g.input("logits", DataType.FLOAT, ["batch", vocabSize]);
  const [values, ids64] = g.node("TopK", [logits, g.constInt64([k])], { axis: -1, largest: 1, sorted: 1 }, ["values", "ids_i64"]);
  g.op("Cast", [ids64], { to: DataType.INT32 }, "", "ids");
  g.output(values, DataType.FLOAT, ["batch", k]);
  g.output("ids", DataType.INT32, ["batch", k]);
  if (logSumExp) {
    // Σ exp(x - max) summed in double (a float32 sum over 100k terms drifts); exp itself in float32 (vectorised).
    const max = g.op("ReduceMax", [logits], { axes: [1], keepdims: 1 }, "", "row_max");
    const weights = g.op("Exp", [g.op("Sub", [logits, max])]);
    g.op("ReduceSum", [g.op("Cast", [weights], { to: DataType.DOUBLE }), g.constInt64([1])], { keepdims: 0 }, "", "exp_sum");
    g.output("row_max", DataType.FLOAT, ["batch", 1]);
    g.output("exp_sum", DataType.DOUBLE, ["batch"]);
  }
  return g.encode("logits_preselect", "top-K candidates (and log-sum-exp) of each logits row");
}

function logSumExpOf(max: Float32Array, sum: Float64Array): Float64Array {
  const out = new Float64Array(sum.length);
  for (let r = 0; r < sum.length; r++) out[r] = max[r] + Math.log(sum[r]);
  return out;
}
