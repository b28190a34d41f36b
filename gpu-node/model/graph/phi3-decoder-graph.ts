/**
 * The Phi-3 decoder as one ONNX graph, in this project's paged-KV layout (LAYOUT_VERSION 1; docs/model-layouts.md).
 *
 * Why this shape: onnxruntime-node does not copy inputs but copies every fetched output on every run.
 * So the KV cache lives in runner-owned buffers fed as INPUTS, and the graph OUTPUTS only what is new:
 * this step's K/V rows and one row of logits per sequence.
 *
 * Inputs (B = batch rows, S = padded new tokens per row, M = block-table width, NB = cache blocks,
 * bs = block size; B, S, M, NB, bs are dynamic, so one graph serves any cache geometry):
 *   input_ids     int64 [B, S]   new tokens, right-padded (pad value is irrelevant, padding is masked)
 *   past_lens     int64 [B]      tokens of the row already in its cache blocks
 *   new_lens      int64 [B]      real new tokens of the row (1..S)
 *   logits_index  int64 [B]      which new position (0..S-1) to return logits for, usually new_lens-1
 *   block_tables  int64 [B, M]   cache block ids of the row, in order; entries past the row's blocks may
 *                                be any valid block id (their positions are masked)
 *   past_key.{l}, past_value.{l}  float32 [KVH, NB, bs, hd]   the whole paged cache of layer l
 * Outputs:
 *   logits        float32 [B, vocab]        at position logits_index of each row
 *   new_key.{l}, new_value.{l}  float32 [KVH, B, S, hd]   this step's K (after RoPE) and V; rows s >= new_lens
 *                                are padding and must not be stored. The runner writes position
 *                                past_lens+s into block block_tables[(past+s)/bs], slot (past+s)%bs.
 *
 * Inside:
 *   positions = min(past_lens + s, contextLength-1); RoPE in HF rotate_half form on the full head dim, cos/sin
 *   looked up in initializer tables [contextLength, hd/2] computed in float64 (inv_freq = theta^(-2i/hd)).
 *   Attention per KV head group without expanding K/V: Q [B,S,H,hd] → [KVH, B, S*g, hd] (g = H/KVH; q head
 *   h uses kv head floor(h/g), as HF repeat_kv). Past K/V = Gather(cache, block_tables, axis=1) →
 *   [KVH, B, M*bs, hd]. Past scores and new-token scores are computed separately (FusedMatMul, transB,
 *   alpha = 1/sqrt(hd)), masked (past: j < past_len; new: j <= s and j < new_len), concatenated (small
 *   score tensors, not K/V), softmaxed, split, and multiplied with past V and new V.
 *   RMSNorm = SimplifiedLayerNormalization (default domain, float32 stash). MLP = down(silu(gate) * up).
 *   Final norm and lm_head run only on the B selected positions.
 * Weights: fp32 MatMul on [in, out]; fp16 stores float16 [in, out] and Casts to float32 (computation and
 * KV cache stay float32, so the CPU EP runs it; ORT folds the Cast at load, below its 1 GiB limit); the
 * fp16 embedding table is gathered first and only the gathered rows are cast; int4 uses com.microsoft
 * MatMulNBits (bits 4, block 32, symmetric: no zero_points, default zero point 8) for every Linear
 * including lm_head, with the embedding table stored float16; int8 is the same with MatMulNBits bits 8
 * (block 32, symmetric, default zero point 128) and accuracy_level 4: the CPU EP then quantises each
 * activation block to int8 and multiplies in integers; without it, it dequantises every weight on every
 * run, many times slower. Norm weights stay float32.
 */
import type { Phi3Config } from "../phi3-config.ts";
import { loadWeight, type WeightSource } from "../weights.ts";
import { DataType, MS_DOMAIN, OnnxGraph, type InitializerSink } from "./onnx-graph.ts";
import { int4Projection } from "./int4-projection.ts";
import { INT4_BLOCK_SIZE, INT8_BLOCK_SIZE, float32Bytes, quantizeInt8, toFloat16Bytes, transpose2d } from "./weight-encoding.ts";

export const LAYOUT_VERSION = 1;
export type ModelDtype = "fp32" | "fp16" | "int8" | "int4";
export const MODEL_DTYPES: readonly ModelDtype[] = ["fp32", "fp16", "int8", "int4"];
/** MatMulNBits accuracy_level for int8 weights: int8 activations and integer dot products (see above). */
export const INT8_ACCURACY_LEVEL = 4;

/** Graph input/output names, one source for builder and runner. */
export const io = {
  inputIds: "input_ids",
  pastLens: "past_lens",
  newLens: "new_lens",
  logitsIndex: "logits_index",
  blockTables: "block_tables",
  pastKey: (l: number) => `past_key.${l}`,
  pastValue: (l: number) => `past_value.${l}`,
  logits: "logits",
  newKey: (l: number) => `new_key.${l}`,
  newValue: (l: number) => `new_value.${l}`,
} as const;

/** Bytes the weights take in the given dtype (decides inline vs external data before streaming starts). */
export function weightBytes(c: Phi3Config, dtype: ModelDtype): number {
  const linear = (out: number, inp: number): number =>
    dtype === "fp32"
      ? out * inp * 4
      : dtype === "fp16"
        ? out * inp * 2
        : dtype === "int8"
          ? out * Math.ceil(inp / INT8_BLOCK_SIZE) * (INT8_BLOCK_SIZE + 4)
          : out * Math.ceil(inp / INT4_BLOCK_SIZE) * (INT4_BLOCK_SIZE / 2 + 4);
  const qkv = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
  const perLayer =
    linear(qkv, c.hiddenSize) +
    linear(c.hiddenSize, c.numHeads * c.headDim) +
    linear(2 * c.intermediateSize, c.hiddenSize) +
    linear(c.hiddenSize, c.intermediateSize) +
    2 * c.hiddenSize * 4;
  const embed = c.vocabSize * c.hiddenSize * (dtype === "fp32" ? 4 : 2);
  return embed + c.numLayers * perLayer + c.hiddenSize * 4 + linear(c.vocabSize, c.hiddenSize);
}

/**
 * One layer's attention, the only part of a decoder layer the layouts do differently (paged cache
 * here, a concatenated past in the benchmark's transformers.js layout). q [B,S,H,hd] and k [B,S,KVH,hd]
 * after RoPE, v [B,S,KVH,hd]; returns the merged heads [B,S,H*hd] that go into o_proj.
 */
export type LayerAttention = (layer: number, q: string, k: string, v: string) => string;

/** The weight-bearing parts every Phi-3 graph layout shares, each weight pulled once and handed to the sink. */
export interface Phi3Blocks {
  /** Token embeddings [B,S,D] of int64 ids [B,S]. */
  embed(inputIds: string): Promise<string>;
  /** Pre-norm attention (via `attend`) and SiLU MLP, both residual: [B,S,D] → [B,S,D]. */
  layer(x: string, l: number, rope: (x: string) => string, attend: LayerAttention): Promise<string>;
  /** Final RMSNorm and lm_head: [..., D] → [..., vocab] logits. */
  head(hidden: string): Promise<string>;
}

export function phi3Blocks(g: OnnxGraph, c: Phi3Config, dtype: ModelDtype, weights: WeightSource, sink: InitializerSink): Phi3Blocks {
  const { numHeads: H, numKvHeads: KV, headDim: hd, hiddenSize: D } = c;
  const F = DataType.FLOAT;
  const i64 = (v: number[]) => g.constInt64(v);

  const load = (name: string, shape: number[]) => loadWeight(weights, name, shape);

  /** y = x · W^T for HF weight `name` of shape [out, inp]. */
  async function linear(x: string, name: string, out: number, inp: number): Promise<string> {
    const w = await load(name, [out, inp]);
    if (dtype === "int4") return int4Projection(g, sink, x, name, w, out, inp, "fp32");
    if (dtype === "int8") {
      const q = quantizeInt8(w, out, inp);
      await sink.add(`${name}.q8`, DataType.UINT8, [out, q.blocksPerRow, INT8_BLOCK_SIZE], q.codes);
      await sink.add(`${name}.scales`, F, [out * q.blocksPerRow], float32Bytes(q.scales));
      return g.op("MatMulNBits", [x, `${name}.q8`, `${name}.scales`], { K: inp, N: out, bits: 8, block_size: INT8_BLOCK_SIZE, accuracy_level: INT8_ACCURACY_LEVEL }, MS_DOMAIN);
    }
    const wt = transpose2d(w, out, inp);
    if (dtype === "fp16") {
      await sink.add(`${name}.fp16`, DataType.FLOAT16, [inp, out], toFloat16Bytes(wt));
      return g.op("MatMul", [x, g.op("Cast", [`${name}.fp16`], { to: F })]);
    }
    await sink.add(name, F, [inp, out], float32Bytes(wt));
    return g.op("MatMul", [x, name]);
  }

  async function rmsNorm(x: string, name: string): Promise<string> {
    await sink.add(name, F, [D], float32Bytes(await load(name, [D])));
    return g.op("SimplifiedLayerNormalization", [x, name], { axis: -1, epsilon: { float: c.rmsNormEps }, stash_type: 1 });
  }

  async function embed(inputIds: string): Promise<string> {
    const embedName = "model.embed_tokens.weight";
    const embed = await load(embedName, [c.vocabSize, D]);
    if (dtype === "fp32") {
      await sink.add(embedName, F, [c.vocabSize, D], float32Bytes(embed));
      return g.op("Gather", [embedName, inputIds], { axis: 0 }); // [B,S,D]
    }
    // Gather the fp16 rows, then cast only those: a Cast of the whole table is folded at load only below
    // onnxruntime's 1 GiB constant-folding limit, and Phi-4's table (100352 × 5120) is 2 GiB in fp32, so
    // it would be cast again on every run.
    await sink.add(`${embedName}.fp16`, DataType.FLOAT16, [c.vocabSize, D], toFloat16Bytes(embed));
    return g.op("Cast", [g.op("Gather", [`${embedName}.fp16`, inputIds], { axis: 0 })], { to: F }); // [B,S,D]
  }

  async function layer(x: string, l: number, rope: (x: string) => string, attend: LayerAttention): Promise<string> {
    const p = `model.layers.${l}`;
    const h = await rmsNorm(x, `${p}.input_layernorm.weight`);
    const qkv = await linear(h, `${p}.self_attn.qkv_proj.weight`, (H + 2 * KV) * hd, D);
    const [q, k, v] = g.node("Split", [qkv, i64([H * hd, KV * hd, KV * hd])], { axis: -1 }, 3);
    const qr = rope(g.op("Reshape", [q, i64([0, 0, H, hd])]));
    const kr = rope(g.op("Reshape", [k, i64([0, 0, KV, hd])]));
    const v4 = g.op("Reshape", [v, i64([0, 0, KV, hd])]);
    const merged = attend(l, qr, kr, v4);
    x = g.op("Add", [x, await linear(merged, `${p}.self_attn.o_proj.weight`, D, H * hd)]);

    const h2 = await rmsNorm(x, `${p}.post_attention_layernorm.weight`);
    const gu = await linear(h2, `${p}.mlp.gate_up_proj.weight`, 2 * c.intermediateSize, D);
    const [gate, up] = g.node("Split", [gu, i64([c.intermediateSize, c.intermediateSize])], { axis: -1 }, 2);
    const act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]);
    return g.op("Add", [x, await linear(act, `${p}.mlp.down_proj.weight`, D, c.intermediateSize)]);
  }

  async function head(hidden: string): Promise<string> {
    const normed = await rmsNorm(hidden, "model.norm.weight");
    return linear(normed, "lm_head.weight", c.vocabSize, D);
  }

  return { embed, layer, head };
}

/** Builds the whole graph, pulling each weight from `weights` once, in model order, and handing its bytes to `sink`. */
export async function buildPhi3DecoderGraph(
  g: OnnxGraph,
  c: Phi3Config,
  dtype: ModelDtype,
  weights: WeightSource,
  sink: InitializerSink,
): Promise<void> {
  const { numHeads: H, numKvHeads: KV, headDim: hd, hiddenSize: D } = c;
  const groups = H / KV;
  const F = DataType.FLOAT;
  const I64 = DataType.INT64;
  const blocks = phi3Blocks(g, c, dtype, weights, sink);

  const i64 = (v: number[]) => g.constInt64(v);
  const scalar = (v: number) => g.constInt64([v], []);

  // ---- inputs
  const inputIds = g.input(io.inputIds, I64, ["batch", "seq"]);
  const pastLens = g.input(io.pastLens, I64, ["batch"]);
  const newLens = g.input(io.newLens, I64, ["batch"]);
  const logitsIndex = g.input(io.logitsIndex, I64, ["batch"]);
  const blockTables = g.input(io.blockTables, I64, ["batch", "max_blocks"]);
  for (let l = 0; l < c.numLayers; l++) {
    g.input(io.pastKey(l), F, [KV, "num_blocks", "block_size", hd]);
    g.input(io.pastValue(l), F, [KV, "num_blocks", "block_size", hd]);
  }

  // ---- sizes, positions, masks (shared by all layers)
  const B1 = g.op("Shape", [inputIds], { start: 0, end: 1 });
  const S1 = g.op("Shape", [inputIds], { start: 1, end: 2 });
  const M1 = g.op("Shape", [blockTables], { start: 1, end: 2 });
  const bs1 = g.op("Shape", [io.pastKey(0)], { start: 2, end: 3 });
  const L1 = g.op("Mul", [M1, bs1]);
  const toScalar = (t: string) => g.op("Squeeze", [t, i64([0])]);
  const jPast = g.op("Range", [scalar(0), toScalar(L1), scalar(1)]); // [L]
  const jNew = g.op("Range", [scalar(0), toScalar(S1), scalar(1)]); // [S]
  const zero = g.constFloat([0], []);
  const negInf = g.constFloat([-3.4028234663852886e38], []);

  const pastCol = g.op("Unsqueeze", [pastLens, i64([1])]); // [B,1]
  const pastValid = g.op("Less", [jPast, pastCol]); // [B,L]
  const pastMask = g.op("Unsqueeze", [g.op("Where", [pastValid, zero, negInf]), i64([1])]); // [B,1,L]

  const causal = g.op("LessOrEqual", [jNew, g.op("Unsqueeze", [jNew, i64([1])])]); // [S(query), S(key)]
  const inRow = g.op("Less", [jNew, g.op("Unsqueeze", [newLens, i64([1, 2])])]); // [B,1,S]
  const newValid = g.op("And", [causal, inRow]); // [B,S,S]
  const newMask4 = g.op("Unsqueeze", [g.op("Where", [newValid, zero, negInf]), i64([2])]); // [B,S,1,S]
  const newMaskG = g.op("Expand", [newMask4, i64([1, 1, groups, 1])]); // [B,S,g,S]
  const newMask = g.op("Reshape", [newMaskG, g.op("Concat", [i64([0, -1]), S1], { axis: 0 })]); // [B,S*g,S]
  const splitPastNew = g.op("Concat", [L1, S1], { axis: 0 });

  const positions = g.op("Min", [g.op("Add", [pastCol, jNew]), i64([c.contextLength - 1])]); // [B,S]
  const rope = rotaryEmbedding(g, c, positions);

  // ---- embedding
  let x = await blocks.embed(inputIds); // [B,S,D]

  const alpha = { float: 1 / Math.sqrt(hd) };
  const cacheShape = i64([KV, 0, -1, hd]);
  const pagedAttention: LayerAttention = (l, qr, kr, v4) => {
    const Q = g.op("Reshape", [g.op("Transpose", [g.op("Reshape", [qr, i64([0, 0, KV, groups, hd])])], { perm: [2, 0, 1, 3, 4] }), cacheShape]); // [KV,B,S*g,hd]
    const newK = g.op("Transpose", [kr], { perm: [2, 0, 1, 3] }, "", io.newKey(l)); // [KV,B,S,hd]
    const newV = g.op("Transpose", [v4], { perm: [2, 0, 1, 3] }, "", io.newValue(l));
    const pastK = g.op("Reshape", [g.op("Gather", [io.pastKey(l), blockTables], { axis: 1 }), cacheShape]); // [KV,B,L,hd]
    const pastV = g.op("Reshape", [g.op("Gather", [io.pastValue(l), blockTables], { axis: 1 }), cacheShape]);
    const sPast = g.op("Add", [g.op("FusedMatMul", [Q, pastK], { transB: 1, alpha }, MS_DOMAIN), pastMask]);
    const sNew = g.op("Add", [g.op("FusedMatMul", [Q, newK], { transB: 1, alpha }, MS_DOMAIN), newMask]);
    const probs = g.op("Softmax", [g.op("Concat", [sPast, sNew], { axis: -1 })], { axis: -1 });
    const [pPast, pNew] = g.node("Split", [probs, splitPastNew], { axis: -1 }, 2);
    const attn = g.op("Add", [g.op("MatMul", [pPast, pastV]), g.op("MatMul", [pNew, newV])]); // [KV,B,S*g,hd]
    return g.op("Reshape", [g.op("Transpose", [g.op("Reshape", [attn, i64([KV, 0, -1, groups, hd])])], { perm: [1, 2, 0, 3, 4] }), i64([0, 0, H * hd])]);
  };
  for (let l = 0; l < c.numLayers; l++) x = await blocks.layer(x, l, rope, pagedAttention);

  // ---- only the selected position of each row goes through the final norm and lm_head
  const rowStart = g.op("Mul", [g.op("Range", [scalar(0), toScalar(B1), scalar(1)]), S1]);
  const flat = g.op("Reshape", [x, i64([-1, D])]);
  const selected = g.op("Gather", [flat, g.op("Add", [rowStart, logitsIndex])], { axis: 0 }); // [B,D]
  const logitsRaw = await blocks.head(selected);
  g.op("Identity", [logitsRaw], {}, "", io.logits);

  g.output(io.logits, F, ["batch", c.vocabSize]);
  for (let l = 0; l < c.numLayers; l++) {
    g.output(io.newKey(l), F, [KV, "batch", "seq", hd]);
    g.output(io.newValue(l), F, [KV, "batch", "seq", hd]);
  }
}

/** cos/sin of position * inv_freq, [contextLength, hd/2], computed in float64 then rounded once. */
/**
 * HF's rotate_half RoPE at `positions` ([B,S] int64, already clamped to the context): returns the
 * function that rotates a [B,S,heads,hd] tensor. cos/sin come from float64-computed tables.
 */
export function rotaryEmbedding(g: OnnxGraph, c: Phi3Config, positions: string): (x: string) => string {
  const hd = c.headDim;
  const { cos, sin } = ropeTables(c);
  const table = (values: Float32Array) =>
    g.op("Unsqueeze", [g.op("Gather", [g.constFloat(values, [c.contextLength, hd / 2]), positions], { axis: 0 }), g.constInt64([2])]); // [B,S,1,hd/2]
  const cosT = table(cos);
  const sinT = table(sin);
  const halves = g.constInt64([hd / 2, hd / 2]);
  return (x: string): string => {
    const [x1, x2] = g.node("Split", [x, halves], { axis: -1 }, 2);
    const r1 = g.op("Sub", [g.op("Mul", [x1, cosT]), g.op("Mul", [x2, sinT])]);
    const r2 = g.op("Add", [g.op("Mul", [x2, cosT]), g.op("Mul", [x1, sinT])]);
    return g.op("Concat", [r1, r2], { axis: -1 });
  };
}

export function ropeTables(c: Phi3Config): { cos: Float32Array; sin: Float32Array } {
  const half = c.headDim / 2;
  const cos = new Float32Array(c.contextLength * half);
  const sin = new Float32Array(c.contextLength * half);
  for (let i = 0; i < half; i++) {
    const invFreq = Math.pow(c.ropeTheta, (-2 * i) / c.headDim);
    for (let pos = 0; pos < c.contextLength; pos++) {
      const a = pos * invFreq;
      cos[pos * half + i] = Math.cos(a);
      sin[pos * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}
