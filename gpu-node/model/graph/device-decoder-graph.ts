/**
 * The Phi-3 decoder as one ONNX graph in the "device" layout: everything on the accelerator through
 * onnxruntime's WebGPU execution provider, the paged KV cache included.
 *
 * Why this shape: onnxruntime-node cannot keep a tensor on a CUDA device between runs, but WebGPU
 * `gpu-buffer` tensors stay on the device and feed back as inputs without a host copy. So the K/V pools
 * are device buffers the runner allocates once and feeds to every run, and `com.microsoft.PagedAttention`
 * writes each new token's K/V into them IN PLACE (the node declares no cache outputs). What crosses back
 * to the host per step is the ranked head of each sampled row, not the cache and not the vocabulary.
 *
 * Inputs (T = new tokens of the whole batch, packed with no padding; B = sequences; R = rows sampled;
 * M = block-table width; NB = cache blocks; bs = block size):
 *   input_ids                  int64 [T]     the batch's new tokens, sequence after sequence
 *   cumulative_sequence_length int32 [B+1]   0, then the running total of each sequence's new tokens
 *   past_seqlens               int32 [B]     tokens of the sequence already in its cache blocks
 *   block_table                int32 [B, M]  cache block ids of each sequence, in order
 *   sample_index               int64 [R]     packed positions (0..T-1) whose logits are ranked, usually
 *                                            each sequence's last new token
 *   attention_metadata         int32 [2]     [max new tokens of one sequence, max past+new]: the op's
 *                                            launch bounds, from the host so it never reads back mid-run
 *   key_cache.{l}, value_cache.{l}  float16 [NB, bs, KVH, hd]   layer l's pools, updated in place: new
 *                                            token i of sequence b lands at position past_seqlens[b] + i
 * Outputs:
 *   top_values    float32 [R, K]   the K = min(64, vocab) largest logits of each row, best first
 *   top_ids       int32   [R, K]   their token ids (ties: lower id first)
 *   log_sum_exp   float32 [R]      log Σ exp(logit) over the whole row, so logprobs stay exact
 *   logits        float32 [R, V]   the whole rows: the runner leaves them on the device and downloads a
 *                                  row only when its sampling settings need the whole vocabulary
 *
 * Inside: fp16 weights and projection/attention activations (int4: com.microsoft MatMulNBits with fp16
 * scales for every Linear incl. lm_head, embedding fp16); the residual stream and the RMSNorm gains stay
 * float32 (a few KB per token; rounding it to fp16 at every layer measurably added to the error);
 * RMSNorm = SimplifiedLayerNormalization (float32 stash) whose output is cast to fp16;
 * PagedAttention on the packed QKV projection with GQA (num_heads / kv_num_heads), RoPE inside the op
 * (do_rotary, rotate_half form) from fp16 cos/sin tables [contextLength, hd/2] computed in float64 with
 * the config's theta; MLP = down(silu(gate) * up). Only the sampled rows go through the final norm and
 * lm_head; the logits are widened to float32 before ranking.
 */
import type { Phi3Config } from "../phi3-config.ts";
import { loadWeight, type WeightSource } from "../weights.ts";
import { DataType, MS_DOMAIN, OnnxGraph, type InitializerSink } from "./onnx-graph.ts";
import { ropeTables } from "./phi3-decoder-graph.ts";
import { int4Projection } from "./int4-projection.ts";
import { INT4_BLOCK_SIZE, float32Bytes, toFloat16Bytes, transpose2d } from "./weight-encoding.ts";

export type DeviceDtype = "fp16" | "int4";
export const DEVICE_DTYPES: readonly DeviceDtype[] = ["fp16", "int4"];
/** Candidates ranked per sampled row on the device (the engine's preselection width). */
export const DEVICE_TOP_K = 64;

/** Graph input/output names, one source for builder and runner. */
export const deviceIo = {
  inputIds: "input_ids",
  cumulativeSeqLen: "cumulative_sequence_length",
  pastSeqLens: "past_seqlens",
  blockTable: "block_table",
  sampleIndex: "sample_index",
  attentionMetadata: "attention_metadata",
  keyCache: (l: number) => `key_cache.${l}`,
  valueCache: (l: number) => `value_cache.${l}`,
  topValues: "top_values",
  topIds: "top_ids",
  logSumExp: "log_sum_exp",
  logits: "logits",
} as const;

/** Bytes the device layout's weights take (decides inline vs external data before streaming starts). */
export function deviceWeightBytes(c: Phi3Config, dtype: DeviceDtype): number {
  const linear = (out: number, inp: number): number =>
    dtype === "fp16" ? out * inp * 2 : out * Math.ceil(inp / INT4_BLOCK_SIZE) * (INT4_BLOCK_SIZE / 2 + 2);
  const qkv = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
  const perLayer =
    linear(qkv, c.hiddenSize) +
    linear(c.hiddenSize, c.numHeads * c.headDim) +
    linear(2 * c.intermediateSize, c.hiddenSize) +
    linear(c.hiddenSize, c.intermediateSize) +
    2 * c.hiddenSize * 4;
  return c.vocabSize * c.hiddenSize * 2 + c.numLayers * perLayer + c.hiddenSize * 4 + linear(c.vocabSize, c.hiddenSize);
}

/** Bytes of K plus V one token takes in the device cache (all layers): Phi-4 fp16 → 204,800. */
export function deviceKvBytesPerToken(c: Phi3Config): number {
  return 2 * c.numLayers * c.numKvHeads * c.headDim * 2;
}

/** Builds the whole graph, pulling each weight from `weights` once, in model order, and handing its bytes to `sink`. */
export async function buildDeviceDecoderGraph(
  g: OnnxGraph,
  c: Phi3Config,
  dtype: DeviceDtype,
  weights: WeightSource,
  sink: InitializerSink,
): Promise<void> {
  const { numHeads: H, numKvHeads: KV, headDim: hd, hiddenSize: D } = c;
  const F16 = DataType.FLOAT16;
  const F32 = DataType.FLOAT;
  const I32 = DataType.INT32;
  const I64 = DataType.INT64;
  const topK = Math.min(DEVICE_TOP_K, c.vocabSize);

  const load = (name: string, shape: number[]) => loadWeight(weights, name, shape);

  /** y = x · W^T for HF weight `name` of shape [out, inp], fp16 in and out. */
  async function linear(x: string, name: string, out: number, inp: number): Promise<string> {
    const w = await load(name, [out, inp]);
    if (dtype === "int4") return int4Projection(g, sink, x, name, w, out, inp, "fp16");
    await sink.add(`${name}.fp16`, F16, [inp, out], toFloat16Bytes(transpose2d(w, out, inp)));
    return g.op("MatMul", [x, `${name}.fp16`]);
  }

  /** RMSNorm of the float32 residual stream with float32 gains, handed on as fp16 (the projections' input type). */
  async function rmsNorm(x: string, name: string): Promise<string> {
    await sink.add(name, F32, [D], float32Bytes(await load(name, [D])));
    const normed = g.op("SimplifiedLayerNormalization", [x, name], { axis: -1, epsilon: { float: c.rmsNormEps }, stash_type: 1 });
    return g.op("Cast", [normed], { to: F16 });
  }
  const toF32 = (t: string) => g.op("Cast", [t], { to: F32 });

  // ---- inputs
  const inputIds = g.input(deviceIo.inputIds, I64, ["tokens"]);
  const cuSeqLen = g.input(deviceIo.cumulativeSeqLen, I32, ["batch_plus_1"]);
  const pastSeqLens = g.input(deviceIo.pastSeqLens, I32, ["batch"]);
  const blockTable = g.input(deviceIo.blockTable, I32, ["batch", "max_blocks"]);
  const sampleIndex = g.input(deviceIo.sampleIndex, I64, ["rows"]);
  const metadata = g.input(deviceIo.attentionMetadata, I32, [2]);
  for (let l = 0; l < c.numLayers; l++) {
    g.input(deviceIo.keyCache(l), F16, ["num_blocks", "block_size", KV, hd]);
    g.input(deviceIo.valueCache(l), F16, ["num_blocks", "block_size", KV, hd]);
  }

  const { cos, sin } = ropeTables(c);
  const half = hd / 2;
  g.addInitializer("rope.cos", F16, [c.contextLength, half], toFloat16Bytes(cos));
  g.addInitializer("rope.sin", F16, [c.contextLength, half], toFloat16Bytes(sin));

  // ---- embedding
  const embedName = "model.embed_tokens.weight";
  await sink.add(`${embedName}.fp16`, F16, [c.vocabSize, D], toFloat16Bytes(await load(embedName, [c.vocabSize, D])));
  let x = toF32(g.op("Gather", [`${embedName}.fp16`, inputIds], { axis: 0 })); // [T,D] float32: the residual stream

  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const h = await rmsNorm(x, `${p}.input_layernorm.weight`);
    const qkv = await linear(h, `${p}.self_attn.qkv_proj.weight`, (H + 2 * KV) * hd, D); // [T,(H+2KV)hd], packed
    const attn = g.op(
      "PagedAttention",
      [qkv, "", "", deviceIo.keyCache(l), deviceIo.valueCache(l), cuSeqLen, pastSeqLens, blockTable, "rope.cos", "rope.sin",
        "", "", "", "", "", "", metadata],
      { num_heads: H, kv_num_heads: KV, do_rotary: 1, rotary_interleaved: 0, scale: { float: 1 / Math.sqrt(hd) } },
      MS_DOMAIN,
    ); // [T, H*hd]
    x = g.op("Add", [x, toF32(await linear(attn, `${p}.self_attn.o_proj.weight`, D, H * hd))]);

    const h2 = await rmsNorm(x, `${p}.post_attention_layernorm.weight`);
    const gu = await linear(h2, `${p}.mlp.gate_up_proj.weight`, 2 * c.intermediateSize, D);
    const [gate, up] = g.node("Split", [gu, g.constInt64([c.intermediateSize, c.intermediateSize])], { axis: -1 }, 2);
    const act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]);
    x = g.op("Add", [x, toF32(await linear(act, `${p}.mlp.down_proj.weight`, D, c.intermediateSize))]);
  }

  // ---- only the sampled rows go through the final norm and lm_head, then are ranked on the device
  const selected = g.op("Gather", [x, sampleIndex], { axis: 0 }); // [R,D]
  const normed = await rmsNorm(selected, "model.norm.weight");
  const logits16 = await linear(normed, "lm_head.weight", c.vocabSize, D);
  const logits = g.op("Cast", [logits16], { to: DataType.FLOAT }, "", deviceIo.logits); // [R,V]
  const rowMax = rankOnDevice(g, logits, c.vocabSize, topK);
  const expSum = g.op("ReduceSum", [g.op("Exp", [g.op("Sub", [logits, rowMax])]), g.constInt64([-1])], { keepdims: 0 }); // [R]
  g.op("Add", [g.op("Squeeze", [rowMax, g.constInt64([1])]), g.op("Log", [expSum])], {}, "", deviceIo.logSumExp);

  g.output(deviceIo.topValues, DataType.FLOAT, ["rows", topK]);
  g.output(deviceIo.topIds, I32, ["rows", topK]);
  g.output(deviceIo.logSumExp, DataType.FLOAT, ["rows"]);
  g.output(deviceIo.logits, DataType.FLOAT, ["rows", c.vocabSize]);
}

/** Vocabulary chunk of the two-stage ranking (see rankOnDevice). */
const RANK_CHUNK = 64;

/**
 * Writes top_values / top_ids (the `k` best logits of each row, ties to the lower id) and returns each
 * row's max [R,1]. Why two stages: onnxruntime's WebGPU TopK over a whole 100k row was by far the slowest
 * op of the graph on a CPU Vulkan device (over 4k it is cheap), so the row is cut into chunks of 64: the k chunks with
 * the highest maxima (ties: lower chunk) hold the row's top k — a chunk outside them has k chunks whose
 * maxima beat its own, so k elements beat each of its elements — and TopK runs over those k·64 logits only.
 * The chosen chunks are put back in id order first, so TopK's lower-position tie rule is the lower-id rule.
 */
export function rankOnDevice(g: OnnxGraph, logits: string, vocab: number, k: number): string {
  const chunks = Math.ceil(vocab / RANK_CHUNK);
  if (chunks < 2 * k) {
    // Small vocabularies: one TopK is cheap.
    const [, ids64] = g.node("TopK", [logits, g.constInt64([k])], { axis: -1, largest: 1, sorted: 1 }, [deviceIo.topValues, "top_ids_i64"]);
    g.op("Cast", [ids64], { to: DataType.INT32 }, "", deviceIo.topIds);
    return g.op("ReduceMax", [logits], { axes: [-1], keepdims: 1 });
  }
  const padded = chunks * RANK_CHUNK === vocab
    ? logits
    : g.op("Pad", [logits, g.constInt64([0, 0, 0, chunks * RANK_CHUNK - vocab]), g.constFloat([-Infinity], [])], { mode: "constant" });
  const F = DataType.FLOAT;
  const f = (v: number) => g.constFloat([v], []);
  const blocks = g.op("Reshape", [padded, g.constInt64([0, chunks, RANK_CHUNK])]); // [R,C,64]
  const chunkMax = g.op("ReduceMax", [blocks], { axes: [-1], keepdims: 0 }); // [R,C]
  const [, bestChunks] = g.node("TopK", [chunkMax, g.constInt64([k])], { axis: -1, largest: 1, sorted: 0 }, 2); // [R,k] int64
  // Index arithmetic runs in float32 (exact below 2^24) and int32: the WebGPU provider has no int64
  // arithmetic or casts, and an op it lacks would run on the CPU and stall the run on a readback.
  const iota = (n: number) => g.constFloat(Float32Array.from({ length: n }, (_, i) => i), [n]);
  // int64 indices only ever index (Gather takes them); Gather from an iota turns them into float32.
  const [ascending] = g.node("TopK", [g.op("Gather", [iota(chunks), bestChunks], { axis: 0 }), g.constInt64([k])], { axis: -1, largest: 0, sorted: 1 }, 2); // [R,k] chunk ids, ascending
  const rows = g.op("Shape", [logits], { start: 0, end: 1 });
  const rowBase = g.op("Mul", [g.op("Cast", [g.op("Range", [g.constInt64([0], []), g.op("Squeeze", [rows, g.constInt64([0])]), g.constInt64([1], [])])], { to: F }), f(chunks)]);
  const flatChunk = g.op("Cast", [g.op("Add", [ascending, g.op("Unsqueeze", [rowBase, g.constInt64([1])])])], { to: DataType.INT32 }); // [R,k] into [R·C]
  const candidates = g.op("Gather", [g.op("Reshape", [blocks, g.constInt64([-1, RANK_CHUNK])]), flatChunk], { axis: 0 }); // [R,k,64]
  const flat = g.op("Reshape", [candidates, g.constInt64([0, k * RANK_CHUNK])]);
  const [, position] = g.node("TopK", [flat, g.constInt64([k])], { axis: -1, largest: 1, sorted: 1 }, [deviceIo.topValues, "top_position"]); // [R,k]
  const positionF = g.op("Gather", [iota(k * RANK_CHUNK), position], { axis: 0 });
  const slot = g.op("Floor", [g.op("Div", [positionF, f(RANK_CHUNK)])]);
  const chunkOf = g.op("GatherElements", [ascending, g.op("Cast", [slot], { to: DataType.INT32 })], { axis: 1 });
  const ids = g.op("Add", [g.op("Mul", [chunkOf, f(RANK_CHUNK)]), g.op("Sub", [positionF, g.op("Mul", [slot, f(RANK_CHUNK)])])]);
  g.op("Cast", [ids], { to: DataType.INT32 }, "", deviceIo.topIds);
  return g.op("ReduceMax", [chunkMax], { axes: [-1], keepdims: 1 });
}

/**
 * The device pools' allocator: one run (with outputs kept on the device) returns zeroed K and V pools for
 * every layer. Each pool is its own Expand node; the session must run with graph optimisation off so no
 * pass merges the identical nodes into one shared buffer.
 */
export function buildKvPoolGraph(c: Phi3Config): Uint8Array {
  const g = new OnnxGraph();
  const shape = g.input("pool_shape", DataType.INT64, [4]); // [NB, bs, KVH, hd]
  g.addInitializer("zero", DataType.FLOAT16, [1], new Uint8Array(2));
  for (let l = 0; l < c.numLayers; l++) {
    for (const name of [deviceIo.keyCache(l), deviceIo.valueCache(l)]) {
      g.node("Expand", ["zero", shape], {}, [name]);
      g.output(name, DataType.FLOAT16, ["num_blocks", "block_size", c.numKvHeads, c.headDim]);
    }
  }
  return g.encode("kv_pool_allocator", "zeroed float16 K/V pools, one pair per layer");
}
