/**
 * A Linear layer as com.microsoft MatMulNBits with 4-bit weights (blocks of 32, symmetric), shared by both
 * graph layouts: the host layout keeps scales in float32, the device layout in fp16 (its WebGPU kernel takes
 * scales in the activation type).
 */
import { DataType, MS_DOMAIN, type InitializerSink, type OnnxGraph } from "./onnx-graph.ts";
import { INT4_BLOCK_SIZE, float32Bytes, quantizeInt4, toFloat16Bytes } from "./weight-encoding.ts";

/** y = x · W^T for `w` of shape [out, inp] (HF layout); writes the packed codes and scales into `sink`. */
export async function int4Projection(
  g: OnnxGraph, sink: InitializerSink, x: string, name: string, w: Float32Array, out: number, inp: number, scales: "fp32" | "fp16",
): Promise<string> {
  const q = quantizeInt4(w, out, inp);
  await sink.add(`${name}.q4`, DataType.UINT8, [out, q.blocksPerRow, INT4_BLOCK_SIZE / 2], q.packed);
  if (scales === "fp16") await sink.add(`${name}.scales`, DataType.FLOAT16, [out * q.blocksPerRow], toFloat16Bytes(q.scales));
  else await sink.add(`${name}.scales`, DataType.FLOAT, [out * q.blocksPerRow], float32Bytes(q.scales));
  return g.op("MatMulNBits", [x, `${name}.q4`, `${name}.scales`], { K: inp, N: out, bits: 4, block_size: INT4_BLOCK_SIZE }, MS_DOMAIN);
}
