/**
 * How one Hugging Face tensor becomes ONNX initializer bytes: transposes for MatMul, float16 bits,
 * and the 4-bit and 8-bit blocks of com.microsoft MatMulNBits.
 */

/** HF Linear weight [out, in] → MatMul right operand [in, out]. */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const T = 32; // tiles keep both sides in cache (the 100352-row lm_head otherwise strides through memory)
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(r0 + T, rows);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(c0 + T, cols);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = w[base + c];
      }
    }
  }
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of a float32, round to nearest even; overflow → ±inf, tiny → subnormal/0. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // underflows to zero
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // may carry into exponent: still correct
  return sign | half;
}

export function toFloat16Bytes(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i]);
  return new Uint8Array(out.buffer);
}

export function float32Bytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

export const INT4_BLOCK_SIZE = 32;

export interface Int4Weight {
  /** uint8 [N, blocksPerRow, 16]: two 4-bit codes per byte, the even element in the low nibble. */
  packed: Uint8Array;
  /** float32 [N * blocksPerRow]. */
  scales: Float32Array;
  blocksPerRow: number;
}

/**
 * Symmetric 4-bit quantisation for MatMulNBits (no zero_points input, so the op's default zero point 8
 * applies): per block of 32 input features of one output row, scale = max|w| / 7, code = round(w/scale) + 8
 * clamped to [1, 15]. `w` is the HF Linear weight [N=out, K=in], which is already MatMulNBits' B layout.
 * K not a multiple of 32 is zero-padded in the last block.
 */
export function quantizeInt4(w: Float32Array, n: number, k: number): Int4Weight {
  const blocksPerRow = Math.ceil(k / INT4_BLOCK_SIZE);
  const bytesPerBlock = INT4_BLOCK_SIZE / 2;
  const packed = new Uint8Array(n * blocksPerRow * bytesPerBlock);
  const scales = new Float32Array(n * blocksPerRow);
  for (let row = 0; row < n; row++) {
    const rowBase = row * k;
    for (let b = 0; b < blocksPerRow; b++) {
      const start = b * INT4_BLOCK_SIZE;
      const end = Math.min(start + INT4_BLOCK_SIZE, k);
      let amax = 0;
      for (let i = start; i < end; i++) amax = Math.max(amax, Math.abs(w[rowBase + i]));
      const scale = amax / 7;
      scales[row * blocksPerRow + b] = scale;
      const inv = scale === 0 ? 0 : 1 / scale;
      const outBase = (row * blocksPerRow + b) * bytesPerBlock;
      for (let j = 0; j < INT4_BLOCK_SIZE; j += 2) {
        const i = start + j;
        const lo = i < end ? quant(w[rowBase + i] * inv) : 8;
        const hi = i + 1 < end ? quant(w[rowBase + i + 1] * inv) : 8;
        packed[outBase + j / 2] = lo | (hi << 4);
      }
    }
  }
  return { packed, scales, blocksPerRow };
}

export const INT8_BLOCK_SIZE = 32;

export interface Int8Weight {
  /** uint8 [N, blocksPerRow, 32]: one 8-bit code per byte. */
  codes: Uint8Array;
  /** float32 [N * blocksPerRow]. */
  scales: Float32Array;
  blocksPerRow: number;
}

/**
 * Symmetric 8-bit quantisation for MatMulNBits bits 8 (no zero_points input, so the op's default zero
 * point 128 applies): per block of 32 input features of one output row, scale = max|w| / 127,
 * code = round(w/scale) + 128 clamped to [1, 255]. Same B layout as int4 ([N=out, K=in] rows);
 * K not a multiple of 32 is zero-padded (code 128) in the last block.
 */
export function quantizeInt8(w: Float32Array, n: number, k: number): Int8Weight {
  const blocksPerRow = Math.ceil(k / INT8_BLOCK_SIZE);
  const codes = new Uint8Array(n * blocksPerRow * INT8_BLOCK_SIZE).fill(128);
  const scales = new Float32Array(n * blocksPerRow);
  for (let row = 0; row < n; row++) {
    const rowBase = row * k;
    for (let b = 0; b < blocksPerRow; b++) {
      const start = b * INT8_BLOCK_SIZE;
      const end = Math.min(start + INT8_BLOCK_SIZE, k);
      let amax = 0;
      for (let i = start; i < end; i++) amax = Math.max(amax, Math.abs(w[rowBase + i]));
      const scale = amax / 127;
      scales[row * blocksPerRow + b] = scale;
      const inv = scale === 0 ? 0 : 1 / scale;
      const outBase = (row * blocksPerRow + b) * INT8_BLOCK_SIZE - start;
      for (let i = start; i < end; i++) {
        const q = Math.round(w[rowBase + i] * inv) + 128;
        codes[outBase + i] = q < 1 ? 1 : q > 255 ? 255 : q;
      }
    }
  }
  return { codes, scales, blocksPerRow };
}

function quant(x: number): number {
  const q = Math.round(x) + 8;
  return q < 1 ? 1 : q > 15 ? 15 : q;
}
