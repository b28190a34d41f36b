/**
 * The files of a model directory and their validation: `model-config.json` (architecture numbers, eos/pad
 * ids, context length, dtype, layout version), `model.onnx`, and `model.onnx.data` when the config says
 * the weights are external. Errors name the file and the field.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { Phi3Config } from "./phi3-config.ts";
import { LAYOUT_VERSION, MODEL_DTYPES, type ModelDtype } from "./graph/phi3-decoder-graph.ts";
import { DEVICE_DTYPES } from "./graph/device-decoder-graph.ts";

export const MODEL_ONNX_FILE = "model.onnx";
export const MODEL_DATA_FILE = "model.onnx.data";
export const MODEL_CONFIG_FILE = "model-config.json";

/**
 * Which graph the directory holds: "host" (phi3-decoder-graph.ts: fp32 compute, the KV cache in host
 * memory, any execution provider) or "device" (device-decoder-graph.ts: fp16 compute, the KV cache
 * resident on a WebGPU device). A config without the field predates the device layout: "host".
 */
export type ModelLayout = "host" | "device";
export const MODEL_LAYOUTS: readonly ModelLayout[] = ["host", "device"];

export interface ModelConfigFile extends Phi3Config {
  layoutVersion: number;
  layout?: ModelLayout;
  architecture: "Phi3ForCausalLM";
  dtype: ModelDtype;
  /** Element type of the KV cache: fp32 in the host layout, fp16 in the device layout. */
  kvDtype: "fp32" | "fp16";
  /** Whether the weights live in model.onnx.data. */
  externalData: boolean;
}

export interface ModelFiles {
  dir: string;
  onnxPath: string;
  config: Phi3Config;
  dtype: ModelDtype;
  kvDtype: "fp32" | "fp16";
  layoutVersion: number;
  layout: ModelLayout;
}

export class ModelFilesError extends Error {
  override name = "ModelFilesError";
}

export async function readModelFiles(modelDir: string): Promise<ModelFiles> {
  const dir = path.resolve(modelDir);
  const configPath = path.join(dir, MODEL_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(configPath, "utf8");
  } catch {
    throw new ModelFilesError(`model directory ${dir}: missing ${MODEL_CONFIG_FILE}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ModelFilesError(`${configPath}: not valid JSON (${(err as Error).message})`);
  }
  const file = parseModelConfig(raw, configPath);
  const onnxPath = path.join(dir, MODEL_ONNX_FILE);
  if (!(await isFile(onnxPath))) throw new ModelFilesError(`model directory ${dir}: missing ${MODEL_ONNX_FILE}`);
  if (file.externalData && !(await isFile(path.join(dir, MODEL_DATA_FILE)))) {
    throw new ModelFilesError(`model directory ${dir}: missing ${MODEL_DATA_FILE} (${MODEL_CONFIG_FILE} says externalData: true)`);
  }
  const { layoutVersion, layout, architecture: _a, dtype, kvDtype, externalData: _e, ...config } = file;
  return { dir, onnxPath, config, dtype, kvDtype, layoutVersion, layout: layout ?? "host" };
}

/** Checks every field the runner relies on; throws naming the file and field. */
export function parseModelConfig(raw: unknown, where = MODEL_CONFIG_FILE): ModelConfigFile {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ModelFilesError(`${where}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  const fail = (field: string, why: string): never => {
    throw new ModelFilesError(`${where}: field ${field} ${why}`);
  };
  if (o.layoutVersion !== LAYOUT_VERSION) fail("layoutVersion", `is ${JSON.stringify(o.layoutVersion)}, this runner reads layout ${LAYOUT_VERSION} (rebuild the model)`);
  if (o.architecture !== "Phi3ForCausalLM") fail("architecture", `is ${JSON.stringify(o.architecture)}, expected "Phi3ForCausalLM"`);
  if (o.layout !== undefined && !MODEL_LAYOUTS.includes(o.layout as ModelLayout)) fail("layout", `is ${JSON.stringify(o.layout)}, expected one of ${MODEL_LAYOUTS.join(", ")}`);
  const device = o.layout === "device";
  const dtypes: readonly string[] = device ? DEVICE_DTYPES : MODEL_DTYPES;
  if (!dtypes.includes(o.dtype as string)) fail("dtype", `is ${JSON.stringify(o.dtype)}, expected one of ${dtypes.join(", ")} for the ${device ? "device" : "host"} layout`);
  const kvDtype = device ? "fp16" : "fp32";
  if (o.kvDtype !== kvDtype) fail("kvDtype", `is ${JSON.stringify(o.kvDtype)}, expected "${kvDtype}" for the ${device ? "device" : "host"} layout`);
  if (typeof o.externalData !== "boolean") fail("externalData", "is missing or not a boolean");
  const numbers = ["vocabSize", "hiddenSize", "numLayers", "numHeads", "numKvHeads", "headDim", "intermediateSize", "rmsNormEps", "ropeTheta", "contextLength", "padTokenId"];
  for (const k of numbers) if (typeof o[k] !== "number" || !Number.isFinite(o[k])) fail(k, "is missing or not a number");
  if (!Array.isArray(o.eosTokenIds)) fail("eosTokenIds", "is missing or not a list");
  const file = o as unknown as ModelConfigFile;
  try {
    validateArchitecture(file);
  } catch (err) {
    throw new ModelFilesError(`${where}: ${(err as Error).message}`);
  }
  return file;
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isFile(), () => false);
}

/** The numbers the graph layout relies on; throws naming the field. */
export function validateArchitecture(c: Phi3Config): void {
  const positiveInts: Array<keyof Phi3Config> = ["vocabSize", "hiddenSize", "numLayers", "numHeads", "numKvHeads", "headDim", "intermediateSize", "contextLength"];
  for (const k of positiveInts) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new Error(`config field ${k} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (c.numHeads % c.numKvHeads !== 0) throw new Error(`config field numHeads (${c.numHeads}) must be a multiple of numKvHeads (${c.numKvHeads})`);
  if (c.headDim % 2 !== 0) throw new Error(`config field headDim (${c.headDim}) must be even for rotary embedding`);
  if (!(c.rmsNormEps > 0)) throw new Error(`config field rmsNormEps must be > 0, got ${c.rmsNormEps}`);
  if (!(c.ropeTheta > 0)) throw new Error(`config field ropeTheta must be > 0, got ${c.ropeTheta}`);
  if (!Array.isArray(c.eosTokenIds) || c.eosTokenIds.length === 0 || c.eosTokenIds.some((t) => !Number.isInteger(t) || t < 0 || t >= c.vocabSize)) {
    throw new Error(`config field eosTokenIds must be a non-empty list of token ids below vocabSize ${c.vocabSize}`);
  }
  if (!Number.isInteger(c.padTokenId) || c.padTokenId < 0 || c.padTokenId >= c.vocabSize) throw new Error(`config field padTokenId must be a token id below vocabSize ${c.vocabSize}`);
}
