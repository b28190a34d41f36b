/**
 * The runner for an execution provider: ORT_EP=webgpu serves the device layout (device-runner.ts: fp16,
 * KV cache on the device); cpu and cuda serve the host layout (model-runner.ts). Each refuses the other
 * layout with one line naming the fix.
 */
import { DeviceRunner } from "./device-runner.ts";
import { ModelRunner } from "./model-runner.ts";
import type { StepRunner } from "./step-runner.ts";
import type { ExecutionProvider } from "./execution-provider.ts";


export interface LoadRunnerOptions {
  modelDir: string;
  ep: ExecutionProvider;
  /** Host layout only: threads for one operator. */
  intraOpThreads?: number;
  numBlocks: number;
  blockSize: number;
}

export async function loadRunner(options: LoadRunnerOptions): Promise<StepRunner> {
  const { modelDir, numBlocks, blockSize } = options;
  if (options.ep === "webgpu") return DeviceRunner.load({ modelDir, numBlocks, blockSize });
  return ModelRunner.load({ modelDir, ep: options.ep, intraOpThreads: options.intraOpThreads, numBlocks, blockSize });
}
