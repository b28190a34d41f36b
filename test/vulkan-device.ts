/**
 * The device-layout tests need a Vulkan device for onnxruntime's WebGPU provider. On a fresh clone this
 * runs .ci/install-vulkan-driver (which leaves a machine that has one alone, and installs Mesa's CPU
 * driver where it may); where no device can be had, the test fails with the script's one line instead of
 * skipping. Once per test file's process.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

const SCRIPT = join(import.meta.dirname, "..", ".ci", "install-vulkan-driver");
let ready: Promise<void> | undefined;

export function ensureVulkanDevice(): Promise<void> {
  ready ??= promisify(execFile)(SCRIPT, [], { timeout: 600_000 }).then(
    () => undefined,
    (err: { stdout?: string; message: string }) => {
      const line = err.stdout?.trim().split("\n").pop() || err.message;
      throw new Error(line);
    },
  );
  return ready;
}
