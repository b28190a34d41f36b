/**
 * Writes a model directory: `model.onnx` (+ `model.onnx.data` when the weights are large) and
 * `model-config.json`. Weights stream through one tensor at a time: in external-data mode each tensor is
 * appended to the data file as soon as it is encoded, so memory holds one tensor, never the model.
 * Everything is written into a sibling temp directory and moved into place only at the end, so a failure
 * leaves no partial output.
 */
import { mkdir, rename, rm, writeFile, readdir, stat } from "node:fs/promises";
import path from "node:path";
import type { Phi3Config } from "./phi3-config.ts";
import type { WeightSource } from "./weights.ts";
import { OnnxGraph } from "./graph/onnx-graph.ts";
import { LAYOUT_VERSION, buildPhi3DecoderGraph, weightBytes, type ModelDtype } from "./graph/phi3-decoder-graph.ts";
import { ExternalDataSink, inlineSink } from "./external-data.ts";
import { MODEL_CONFIG_FILE, MODEL_DATA_FILE, MODEL_ONNX_FILE, validateArchitecture, type ModelConfigFile } from "./model-files.ts";

export interface WriteModelOptions {
  outDir: string;
  dtype: ModelDtype;
  /** Weights larger than this (bytes, in the target dtype) go to model.onnx.data. Default 512 MiB (protobuf's hard limit is 2 GiB). */
  inlineLimitBytes?: number;
}

const DEFAULT_INLINE_LIMIT = 512 * 1024 * 1024;

export async function writeModel(config: Phi3Config, weights: WeightSource, options: WriteModelOptions): Promise<void> {
  validateArchitecture(config);
  const outDir = path.resolve(options.outDir);
  const tmpDir = `${outDir}.partial-${process.pid}-${Date.now()}`;
  await mkdir(tmpDir, { recursive: true });
  let dataSink: ExternalDataSink | undefined;
  try {
    const external = weightBytes(config, options.dtype) > (options.inlineLimitBytes ?? DEFAULT_INLINE_LIMIT);
    const g = new OnnxGraph();
    if (external) dataSink = await ExternalDataSink.create(g, tmpDir, MODEL_DATA_FILE);
    await buildPhi3DecoderGraph(g, config, options.dtype, weights, dataSink ?? inlineSink(g));
    if (dataSink) {
      await dataSink.close();
      dataSink = undefined;
    }
    await writeFile(path.join(tmpDir, MODEL_ONNX_FILE), g.encode("phi3_decoder_paged_kv", `phi3 decoder, layout v${LAYOUT_VERSION}, ${options.dtype}`));
    const fileConfig: ModelConfigFile = {
      layoutVersion: LAYOUT_VERSION,
      architecture: "Phi3ForCausalLM",
      dtype: options.dtype,
      kvDtype: "fp32",
      externalData: external,
      ...config,
    };
    await writeFile(path.join(tmpDir, MODEL_CONFIG_FILE), JSON.stringify(fileConfig, null, 2) + "\n");
    await moveIntoPlace(tmpDir, outDir);
  } catch (err) {
    if (dataSink) await dataSink.close().catch(() => {});
    await rm(tmpDir, { recursive: true, force: true });
    throw err;
  }
}

/** Renames the finished files over any previous model in outDir (a stale data file is removed). */
async function moveIntoPlace(tmpDir: string, outDir: string): Promise<void> {
  const exists = await stat(outDir).then(() => true, () => false);
  if (!exists) {
    await rename(tmpDir, outDir);
    return;
  }
  const names = await readdir(tmpDir);
  if (!names.includes(MODEL_DATA_FILE)) await rm(path.join(outDir, MODEL_DATA_FILE), { force: true });
  // The config goes last: a reader that sees the new config also sees the new graph.
  for (const name of [...names.filter((n) => n !== MODEL_CONFIG_FILE), MODEL_CONFIG_FILE]) {
    await rename(path.join(tmpDir, name), path.join(outDir, name));
  }
  await rm(tmpDir, { recursive: true, force: true });
}
