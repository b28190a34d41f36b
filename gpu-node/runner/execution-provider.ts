/**
 * The execution providers a GPU node can run on and what each needs, without loading onnxruntime (the
 * service's host thread reads these; only the engine thread loads the runtime). cpu and cuda serve the
 * host layout, webgpu the device layout (model-files.ts).
 */
export type ExecutionProvider = "cpu" | "cuda" | "webgpu";
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ["cpu", "cuda", "webgpu"];

/**
 * The smallest KV block the device layout takes. onnxruntime's WebGPU PagedAttention requires a power of
 * two ≥ 16, but with 16 (onnxruntime-node 1.30) attention goes wrong once a sequence reaches 32 tokens
 * (logprob errors of 0.07 to 0.15 against the reference, contiguous block tables or not), while 32 and 64
 * stay within fp16 noise to 200 tokens; device-runner.test.ts checks 32 past that point.
 */
export const MIN_DEVICE_BLOCK_SIZE = 32;
