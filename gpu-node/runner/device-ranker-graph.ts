/**
 * The device's second look at a step's logits: a small session that takes the forward pass's logits rows
 * where they lie (a `gpu-buffer` tensor, no host copy), applies each row's sparse logit_bias and penalties
 * there, and ranks the adjusted rows, so rows with bias or penalties draw from device candidates instead of
 * bringing their whole row back.
 *
 * Inputs (R rows, V vocabulary, N adjusted entries, each (row, token) at most once):
 *   logits           float32 [R, V]  the forward pass's rows (left on the device)
 *   adjust_index     int64   [N]     r·V + token id of each adjusted entry (flat view)
 *   adjust_bias      float32 [N]     added first (logit_bias)
 *   adjust_penalty   float32 [N]     repetition_penalty p (1 where none): x > 0 ? x / p : x · p
 *   adjust_addend    float32 [N]     added last: −(count·frequency_penalty + presence_penalty)
 *   inv_temperature  float32 [R]     1/T of each row (1 for greedy rows)
 * Outputs: top_values / top_ids / log_sum_exp as the decoder's (over the adjusted rows), and
 *   scaled_log_sum_exp float32 [R]  log Σ exp(x/T) over each adjusted row: with it the sampler knows what
 *                                   mass the candidates carry at the row's temperature.
 * The order of operations is logit-adjustments.ts's (bias, repetition, frequency/presence).
 */
import { DataType, OnnxGraph } from "../model/graph/onnx-graph.ts";
import { deviceIo, rankOnDevice } from "../model/graph/device-decoder-graph.ts";

export const rankerIo = {
  logits: "logits",
  adjustIndex: "adjust_index",
  adjustBias: "adjust_bias",
  adjustPenalty: "adjust_penalty",
  adjustAddend: "adjust_addend",
  invTemperature: "inv_temperature",
  scaledLogSumExp: "scaled_log_sum_exp",
} as const;

export function buildDeviceRankerGraph(vocab: number, k: number): Uint8Array {
  const g = new OnnxGraph();
  const F = DataType.FLOAT;
  const logits = g.input(rankerIo.logits, F, ["rows", vocab]);
  const index = g.input(rankerIo.adjustIndex, DataType.INT64, ["entries"]);
  const bias = g.input(rankerIo.adjustBias, F, ["entries"]);
  const penalty = g.input(rankerIo.adjustPenalty, F, ["entries"]);
  const addend = g.input(rankerIo.adjustAddend, F, ["entries"]);
  const invT = g.input(rankerIo.invTemperature, F, ["rows"]);

  const flat = g.op("Reshape", [logits, g.constInt64([-1])]);
  const biased = g.op("Add", [g.op("Gather", [flat, index], { axis: 0 }), bias]);
  const penalised = g.op("Where", [
    g.op("Greater", [biased, g.constFloat([0], [])]),
    g.op("Div", [biased, penalty]),
    g.op("Mul", [biased, penalty]),
  ]);
  const adjustedEntries = g.op("Add", [penalised, addend]);
  const scattered = g.op("ScatterND", [flat, g.op("Unsqueeze", [index, g.constInt64([1])]), adjustedEntries]);
  const adjusted = g.op("Reshape", [scattered, g.op("Shape", [logits])]); // [R,V]

  const rowMax = rankOnDevice(g, adjusted, vocab, k); // [R,1]
  const expSum = g.op("ReduceSum", [g.op("Exp", [g.op("Sub", [adjusted, rowMax])]), g.constInt64([-1])], { keepdims: 0 });
  g.op("Add", [g.op("Squeeze", [rowMax, g.constInt64([1])]), g.op("Log", [expSum])], {}, "", deviceIo.logSumExp);
  // At temperature T: log Σ exp(x/T) = max/T + log Σ exp((x − max)/T).
  const invTCol = g.op("Unsqueeze", [invT, g.constInt64([1])]); // [R,1]
  const scaledSum = g.op("ReduceSum", [g.op("Exp", [g.op("Mul", [g.op("Sub", [adjusted, rowMax]), invTCol])]), g.constInt64([-1])], { keepdims: 0 });
  g.op("Add", [g.op("Squeeze", [g.op("Mul", [rowMax, invTCol]), g.constInt64([1])]), g.op("Log", [scaledSum])], {}, "", rankerIo.scaledLogSumExp);

  g.output(deviceIo.topValues, F, ["rows", k]);
  g.output(deviceIo.topIds, DataType.INT32, ["rows", k]);
  g.output(deviceIo.logSumExp, F, ["rows"]);
  g.output(rankerIo.scaledLogSumExp, F, ["rows"]);
  return g.encode("device_ranker", "bias, penalties and temperature applied to device logits, then ranked");
}
