/**
 * The fastest a step can possibly run on a GPU: the bytes it must move through HBM divided by the
 * memory bandwidth (decode is bound by reading every weight once plus the batch's KV cache), and for
 * prefill also the matrix work divided by the dense fp16 tensor-core rate. The bench prints every
 * measured figure beside these floors, so "how far from the hardware" is one ratio.
 *
 * Byte counts follow the device layout: fp16 projection weights and KV cache, float32 RMSNorm weights;
 * int4 projections are MatMulNBits blocks of 32 input features (16 bytes of codes + one fp16 scale per
 * block), including lm_head; the embedding is a lookup, so a step reads only its tokens' rows of it.
 */
import type { Phi3Config } from "../../gpu-node/model/phi3-config.ts";

export type WeightDtype = "fp16" | "int4";

export interface GpuSpec {
  name: string;
  /** HBM bandwidth, bytes/s (vendor datasheet). */
  hbmBytesPerSec: number;
  /** Dense fp16 tensor-core rate, FLOP/s (vendor datasheet, SXM). */
  fp16FlopsPerSec: number;
}

/** The two GPUs the bench reports against (NVIDIA datasheets, SXM parts). */
export const GPUS = {
  h100: { name: "H100 SXM", hbmBytesPerSec: 3.35e12, fp16FlopsPerSec: 989.4e12 },
  h200: { name: "H200 SXM", hbmBytesPerSec: 4.8e12, fp16FlopsPerSec: 989.4e12 },
} as const satisfies Record<string, GpuSpec>;
export type GpuId = keyof typeof GPUS;

const FP16_BYTES = 2;
const NORM_WEIGHT_BYTES = 4;
const INT4_BLOCK = 32;
/** One MatMulNBits block: 32 four-bit codes plus its fp16 scale. */
const INT4_BLOCK_BYTES = INT4_BLOCK / 2 + FP16_BYTES;

export type ModelShape = Pick<Phi3Config, "vocabSize" | "hiddenSize" | "numLayers" | "numHeads" | "numKvHeads" | "headDim" | "intermediateSize">;

/** Bytes of one Linear with `inp` inputs and `out` outputs. */
export function linearBytes(out: number, inp: number, dtype: WeightDtype): number {
  return dtype === "fp16" ? out * inp * FP16_BYTES : out * Math.ceil(inp / INT4_BLOCK) * INT4_BLOCK_BYTES;
}

/** Weight bytes of one decoder layer: the four projections and two RMSNorm weight vectors (float32). */
export function layerWeightBytes(c: ModelShape, dtype: WeightDtype): number {
  const D = c.hiddenSize;
  const qkv = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
  return (
    linearBytes(qkv, D, dtype) +
    linearBytes(D, c.numHeads * c.headDim, dtype) +
    linearBytes(2 * c.intermediateSize, D, dtype) +
    linearBytes(D, c.intermediateSize, dtype) +
    2 * D * NORM_WEIGHT_BYTES
  );
}

/** Weight bytes one forward pass reads: every layer, the final norm, lm_head, and `tokens` rows of the embedding. */
export function weightBytesRead(c: ModelShape, dtype: WeightDtype, tokens: number): number {
  return c.numLayers * layerWeightBytes(c, dtype) + c.hiddenSize * NORM_WEIGHT_BYTES + linearBytes(c.vocabSize, c.hiddenSize, dtype) + tokens * c.hiddenSize * FP16_BYTES;
}

/** KV cache bytes of one token across all layers (K and V, fp16): 204,800 for Phi-4. */
export function kvBytesPerToken(c: ModelShape): number {
  return c.numLayers * 2 * c.numKvHeads * c.headDim * FP16_BYTES;
}

export interface Floor {
  bytes: number;
  /** Milliseconds at each GPU's HBM bandwidth. */
  ms: Record<GpuId, number>;
}

function floorOf(bytes: number, flops = 0): Floor {
  const ms = {} as Record<GpuId, number>;
  for (const id of Object.keys(GPUS) as GpuId[]) {
    const g = GPUS[id];
    ms[id] = Math.max(bytes / g.hbmBytesPerSec, flops / g.fp16FlopsPerSec) * 1000;
  }
  return { bytes, ms };
}

/**
 * One decode step of `batch` rows, each with `context` tokens already cached: read the weights once,
 * read every row's cached K/V, write each row's new K/V.
 */
export function decodeFloor(c: ModelShape, dtype: WeightDtype, batch: number, context: number): Floor {
  return floorOf(weightBytesRead(c, dtype, batch) + batch * (context + 1) * kvBytesPerToken(c));
}

/** FLOPs of one prompt of `tokens` tokens: 2 per weight per token in the layers, causal attention, lm_head at the last position. */
export function prefillFlops(c: ModelShape, tokens: number): number {
  const D = c.hiddenSize;
  const layerParams = (c.numHeads + 2 * c.numKvHeads) * c.headDim * D + D * c.numHeads * c.headDim + 3 * c.intermediateSize * D;
  const attention = 2 * 2 * c.numHeads * c.headDim * ((tokens * (tokens + 1)) / 2); // QK^T and PV over the causal half
  return c.numLayers * (2 * tokens * layerParams + attention) + 2 * c.vocabSize * D;
}

/** One prompt of `tokens` tokens in one run: weights once and the prompt's K/V written, or the matrix work, whichever is slower. */
export function prefillFloor(c: ModelShape, dtype: WeightDtype, tokens: number): Floor {
  return floorOf(weightBytesRead(c, dtype, tokens) + tokens * kvBytesPerToken(c), prefillFlops(c, tokens));
}

/**
 * A figure measured at two layer counts, extended to `layers` along the straight line through them:
 * the per-layer cost is the slope, the rest (embedding, lm_head, per-run overhead) the intercept.
 */
export function extrapolateToLayers(a: { layers: number; value: number }, b: { layers: number; value: number }, layers: number): { perLayer: number; fixed: number; value: number } {
  if (a.layers === b.layers) throw new Error(`two different layer counts are needed, got ${a.layers} twice`);
  const perLayer = (b.value - a.value) / (b.layers - a.layers);
  const fixed = a.value - a.layers * perLayer;
  return { perLayer, fixed, value: fixed + layers * perLayer };
}
