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
import { DEVICE_DTYPES, buildDeviceDecoderGraph, deviceWeightBytes, type DeviceDtype } from "./graph/device-decoder-graph.ts";
import { ExternalDataSink, inlineSink } from "./external-data.ts";
import { MODEL_CONFIG_FILE, MODEL_DATA_FILE, MODEL_ONNX_FILE, validateArchitecture, type ModelConfigFile, type ModelLayout } from "./model-files.ts";

function isDeviceDtype(d: ModelDtype): d is DeviceDtype {
  return (DEVICE_DTYPES as readonly string[]).includes(d);
}

export interface WriteModelOptions {
  outDir: string;
  dtype: ModelDtype;
  /** Which graph to write (model-files.ts); default "host". The device layout takes fp16 or int4. */
  layout?: ModelLayout;
  /** Weights larger than this (bytes, in the target dtype) go to model.onnx.data. Default 512 MiB (protobuf's hard limit is 2 GiB). */
  inlineLimitBytes?: number;
}

const DEFAULT_INLINE_LIMIT = 512 * 1024 * 1024;

export async function writeModel(config: Phi3Config, weights: WeightSource, options: WriteModelOptions): Promise<void> {
  validateArchitecture(config);
  const layout = options.layout ?? "host";
  const dtype = options.dtype;
  if (layout === "device" && !isDeviceDtype(dtype)) throw new Error(`the device layout computes in fp16: --dtype must be one of ${DEVICE_DTYPES.join(", ")}, got ${dtype}`);
  const outDir = path.resolve(options.outDir);
  const tmpDir = `${outDir}.partial-${process.pid}-${Date.now()}`;
  await mkdir(tmpDir, { recursive: true });
  let dataSink: ExternalDataSink | undefined;
  try {
    const bytes = layout === "device" && isDeviceDtype(dtype) ? deviceWeightBytes(config, dtype) : weightBytes(config, dtype);
    const external = bytes > (options.inlineLimitBytes ?? DEFAULT_INLINE_LIMIT);
    const g = new OnnxGraph();
    if (external) dataSink = await ExternalDataSink.create(g, tmpDir, MODEL_DATA_FILE);
    const sink = dataSink ?? inlineSink(g);
    if (layout === "device" && isDeviceDtype(dtype)) await buildDeviceDecoderGraph(g, config, dtype, weights, sink);
    else await buildPhi3DecoderGraph(g, config, dtype, weights, sink);
    if (dataSink) {
      await dataSink.close();
      dataSink = undefined;
    }
    await writeFile(path.join(tmpDir, MODEL_ONNX_FILE), g.encode("phi3_decoder_paged_kv", `phi3 decoder, layout v${LAYOUT_VERSION} ${layout}, ${dtype}`));
    const fileConfig: ModelConfigFile = {
      layoutVersion: LAYOUT_VERSION,
      layout,
      architecture: "Phi3ForCausalLM",
      dtype,
      kvDtype: layout === "device" ? "fp16" : "fp32",
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
