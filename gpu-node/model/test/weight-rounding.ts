/**
 * What each model dtype does to a weight's values, written from the formats' definitions (not from
 * the builder), so the float64 reference can run with exactly the weights the ONNX model stores:
 *
 *   fp16: every Linear weight and the embedding table rounded to IEEE binary16 (nearest even);
 *         norm gains stay float32.
 *   int4: every Linear weight (lm_head included) as com.microsoft MatMulNBits reads it: blocks of 32
 *         consecutive input features of one output row, value = (code − 8) · scale with the default
 *         zero point 8, symmetric scale = max|w| / 7 (float32), code = clamp(round(w / scale) + 8, 1, 15);
 *         the embedding table in fp16; norm gains float32.
 *   int8: the same with MatMulNBits bits 8: default zero point 128, scale = max|w| / 127 (float32),
 *         code = clamp(round(w / scale) + 128, 1, 255), value = (code − 128) · scale.
 */
import { f16BitsToNumber, numberToF16Bits } from "../safetensors.ts";
import type { Tensor32 } from "../weights.ts";
import type { WeightRounding } from "../reference/phi3-reference.ts";

const INT4_BLOCK = 32;

function isNorm(name: string): boolean {
  return name.endsWith("layernorm.weight") || name === "model.norm.weight";
}

function toFp16(t: Tensor32): Float32Array {
  return t.data.map((v) => f16BitsToNumber(numberToF16Bits(v)));
}

/** Symmetric block quantisation with `levels` codes on each side of the zero point (7 for int4, 127 for int8). */
function toSymmetricBlocks(t: Tensor32, levels: number): Float32Array {
  const [rows, cols] = t.shape;
  const out = new Float32Array(t.data.length);
  for (let r = 0; r < rows; r++) {
    for (let start = 0; start < cols; start += INT4_BLOCK) {
      const end = Math.min(start + INT4_BLOCK, cols);
      let amax = 0;
      for (let c = start; c < end; c++) amax = Math.max(amax, Math.abs(t.data[r * cols + c]));
      const scale = Math.fround(amax / levels);
      for (let c = start; c < end; c++) {
        const code = scale === 0 ? 0 : Math.min(levels, Math.max(-levels, Math.round(t.data[r * cols + c] / scale)));
        out[r * cols + c] = code * scale;
      }
    }
  }
  return out;
}

export const FP16_WEIGHTS: WeightRounding = (name, t) => (isNorm(name) ? t.data : toFp16(t));

export const INT4_WEIGHTS: WeightRounding = (name, t) =>
  isNorm(name) ? t.data : name === "model.embed_tokens.weight" ? toFp16(t) : toSymmetricBlocks(t, 7);

export const INT8_WEIGHTS: WeightRounding = (name, t) =>
  isNorm(name) ? t.data : name === "model.embed_tokens.weight" ? toFp16(t) : toSymmetricBlocks(t, 127);
