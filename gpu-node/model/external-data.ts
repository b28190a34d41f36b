/**
 * ONNX external data: weights go into a side file next to the .onnx (protobuf cannot hold more than
 * 2 GiB), each tensor written the moment it is encoded, so memory holds one tensor, never the model.
 */
import { open, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { DataTypeCode, OnnxGraph } from "./graph/onnx-graph.ts";
import type { InitializerSink } from "./graph/onnx-graph.ts";

/** Tensors smaller than this stay inline in the .onnx (norm weights, small tables). */
const EXTERNAL_MIN_BYTES = 1024;
/** Offsets in the data file are aligned so the runtime may map tensors directly. */
const DATA_ALIGNMENT = 4096;

/** An initializer sink that appends large tensors to `dir/fileName` and references them from `graph`. */
export class ExternalDataSink implements InitializerSink {
  private offset = 0;

  private constructor(
    private readonly graph: OnnxGraph,
    private readonly file: FileHandle,
    private readonly fileName: string,
  ) {}

  /** `fileName` is the location the graph records: relative to the .onnx file's directory. */
  static async create(graph: OnnxGraph, dir: string, fileName: string): Promise<ExternalDataSink> {
    return new ExternalDataSink(graph, await open(path.join(dir, fileName), "w"), fileName);
  }

  async add(name: string, type: DataTypeCode, dims: number[], bytes: Uint8Array): Promise<void> {
    if (bytes.byteLength < EXTERNAL_MIN_BYTES) {
      this.graph.addInitializer(name, type, dims, bytes);
      return;
    }
    this.offset = Math.ceil(this.offset / DATA_ALIGNMENT) * DATA_ALIGNMENT;
    await this.file.write(bytes, 0, bytes.byteLength, this.offset);
    this.graph.addExternalInitializer(name, type, dims, { location: this.fileName, offset: this.offset, length: bytes.byteLength });
    this.offset += bytes.byteLength;
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

/** Keeps every tensor inline in the .onnx (models well under protobuf's limit). */
export function inlineSink(graph: OnnxGraph): InitializerSink {
  return {
    async add(name, type, dims, bytes) {
      graph.addInitializer(name, type, dims, bytes);
    },
  };
}
