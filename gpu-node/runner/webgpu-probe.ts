/**
 * Whether onnxruntime's WebGPU execution provider finds an adapter on this machine (a Vulkan device:
 * a GPU's driver, or Mesa's CPU driver lavapipe): creates and runs a one-node session on it.
 * `npx tsx gpu-node/runner/webgpu-probe.ts` exits 0 when it does, else prints why on one line and exits 1
 * (.ci/install-vulkan-driver uses it before and after installing a driver).
 */
import * as ort from "onnxruntime-node";
import { DataType, OnnxGraph } from "../model/graph/onnx-graph.ts";

/** null when a WebGPU session runs here, else onnxruntime's reason on one line. */
export async function probeWebGpu(): Promise<string | null> {
  const g = new OnnxGraph();
  g.input("x", DataType.FLOAT, [1]);
  g.node("Neg", ["x"], {}, ["y"]);
  g.output("y", DataType.FLOAT, [1]);
  try {
    const session = await ort.InferenceSession.create(g.encode("probe", "webgpu probe"), { executionProviders: ["webgpu"], logSeverityLevel: 4 });
    try {
      const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from([2]), [1]) });
      if ((out.y.data as Float32Array)[0] !== -2) return "a WebGPU session ran but returned a wrong value";
    } finally {
      await session.release();
    }
    return null;
  } catch (err) {
    return (err as Error).message.replace(/\s+/g, " ").trim();
  }
}

if (process.argv[1]?.endsWith("webgpu-probe.ts")) {
  probeWebGpu().then((why) => {
    if (why === null) {
      process.stdout.write("webgpu: adapter found\n");
      process.exit(0);
    }
    process.stdout.write(`webgpu: no usable adapter (${why})\n`);
    process.exit(1);
  });
}
