/**
 * Drives a device-layout model directly through onnxruntime-node's WebGPU execution provider, for the
 * bench: K/V pools allocated once on the device by the pool graph, fed to every run, updated in place by
 * PagedAttention; per step only the small inputs go up and the ranked head of each row (TopK values and
 * ids, log-sum-exp) comes back, as in serving. The full logits stay on the device and are released.
 */
import * as ort from "onnxruntime-node";
import { readModelFiles } from "../../gpu-node/model/model-files.ts";
import type { Phi3Config } from "../../gpu-node/model/phi3-config.ts";
import { buildKvPoolGraph, deviceIo } from "../../gpu-node/model/graph/device-decoder-graph.ts";

/** One sequence of a step: its new tokens and where its cache lives. */
export interface StepRow {
  tokens: ArrayLike<number>;
  pastLen: number;
  blockTable: ArrayLike<number>;
}

export interface DeviceStepper {
  readonly config: Phi3Config;
  /** One forward pass over `rows`; resolves when the ranked heads are on the host. Returns bytes fetched. */
  step(rows: ReadonlyArray<StepRow>): Promise<number>;
  release(): Promise<void>;
}

export async function loadGraphDriver(modelDir: string, numBlocks: number, blockSize: number): Promise<DeviceStepper> {
  const files = await readModelFiles(modelDir);
  if (files.layout !== "device") throw new Error(`${modelDir}: layout ${files.layout}, the bench needs a device-layout model`);
  const c = files.config;
  const session = await ort.InferenceSession.create(files.onnxPath, {
    executionProviders: ["webgpu"],
    graphOptimizationLevel: "all",
    logSeverityLevel: 3, // not the notice that shape ops run on the CPU (by design)
    preferredOutputLocation: { [deviceIo.logits]: "gpu-buffer" },
  });
  const poolSession = await ort.InferenceSession.create(buildKvPoolGraph(c), {
    executionProviders: ["webgpu"],
    logSeverityLevel: 3,
    graphOptimizationLevel: "disabled", // keeps one buffer per pool (identical Expand nodes must not be merged)
    preferredOutputLocation: "gpu-buffer",
  });
  const shape = new ort.Tensor("int64", BigInt64Array.from([numBlocks, blockSize, c.numKvHeads, c.headDim].map(BigInt)), [4]);
  const pools = await poolSession.run({ pool_shape: shape });
  const cacheFeeds: Record<string, ort.Tensor> = {};
  for (let l = 0; l < c.numLayers; l++) {
    cacheFeeds[deviceIo.keyCache(l)] = pools[deviceIo.keyCache(l)];
    cacheFeeds[deviceIo.valueCache(l)] = pools[deviceIo.valueCache(l)];
  }

  return {
    config: c,
    async step(rows) {
      const B = rows.length;
      let T = 0;
      let M = 1;
      let maxNew = 0;
      let maxTotal = 0;
      for (const r of rows) {
        T += r.tokens.length;
        M = Math.max(M, Math.ceil((r.pastLen + r.tokens.length) / blockSize));
        maxNew = Math.max(maxNew, r.tokens.length);
        maxTotal = Math.max(maxTotal, r.pastLen + r.tokens.length);
      }
      const inputIds = new BigInt64Array(T);
      const cuSeqLen = new Int32Array(B + 1);
      const past = new Int32Array(B);
      const table = new Int32Array(B * M);
      const sample = new BigInt64Array(B);
      let t = 0;
      for (let b = 0; b < B; b++) {
        const r = rows[b];
        for (let i = 0; i < r.tokens.length; i++) inputIds[t++] = BigInt(r.tokens[i]);
        cuSeqLen[b + 1] = t;
        past[b] = r.pastLen;
        sample[b] = BigInt(t - 1);
        const used = Math.ceil((r.pastLen + r.tokens.length) / blockSize);
        for (let m = 0; m < M; m++) table[b * M + m] = r.blockTable[m < used ? m : 0];
      }
      const out = await session.run({
        ...cacheFeeds,
        [deviceIo.inputIds]: new ort.Tensor("int64", inputIds, [T]),
        [deviceIo.cumulativeSeqLen]: new ort.Tensor("int32", cuSeqLen, [B + 1]),
        [deviceIo.pastSeqLens]: new ort.Tensor("int32", past, [B]),
        [deviceIo.blockTable]: new ort.Tensor("int32", table, [B, M]),
        [deviceIo.sampleIndex]: new ort.Tensor("int64", sample, [B]),
        [deviceIo.attentionMetadata]: new ort.Tensor("int32", Int32Array.from([maxNew, maxTotal]), [2]),
      });
      out[deviceIo.logits].dispose();
      let bytes = 0;
      for (const name of [deviceIo.topValues, deviceIo.topIds, deviceIo.logSumExp]) bytes += (out[name].data as Float32Array | Int32Array).byteLength;
      return bytes;
    },
    async release() {
      for (const t of Object.values(cacheFeeds)) t.dispose();
      await poolSession.release();
      await session.release();
    },
  };
}
