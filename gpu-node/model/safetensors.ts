/**
 * The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`,
 * then the raw little-endian tensor bytes (offsets relative to the end of the header).
 *
 * The reader opens a file handle and reads one tensor at a time with positional reads, converting
 * BF16/F16/F32 to float32 chunk by chunk: a 29 GB checkpoint is never in memory, and a tensor costs
 * its float32 size plus one bounded chunk. A sharded checkpoint (`*.safetensors.index.json` with a
 * `weight_map`) opens every shard's header and routes each name to its shard.
 * The writer exists for tests and tools that make small checkpoints.
 */
import { open, readFile, writeFile, type FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Tensor32, WeightSource } from "./weights.ts";

export type SafetensorsDtype = "F32" | "F16" | "BF16";

const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** A bad or unreadable file; the message names the file and, where one is involved, the tensor. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file. */
  byteOffset: number;
  byteLength: number;
}

/** Bytes read per positional read while converting (bounded scratch, whatever the tensor size). */
const READ_CHUNK_BYTES = 16 << 20;
/** A header larger than this is not a safetensors file (the reference implementation caps at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
    } catch (err) {
      throw new SafetensorsError(`${path}: cannot open (${(err as Error).message})`);
    }
    try {
      const { tensors, metadata } = await readHeader(path, handle);
      return new SafetensorsFile(path, handle, tensors, metadata);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(`${this.path}: tensor ${name} is missing`);
    return info;
  }

  /** Reads one tensor from disk and converts it to float32. */
  async read(name: string): Promise<Tensor32> {
    const info = this.info(name);
    const count = info.byteLength / BYTES_PER_ELEMENT[info.dtype];
    const out = new Float32Array(count);
    const elementBytes = BYTES_PER_ELEMENT[info.dtype];
    // Whole elements per chunk; F32 chunks land straight in the output's memory.
    const chunkElements = Math.max(1, Math.floor(READ_CHUNK_BYTES / elementBytes));
    const scratch = info.dtype === "F32" ? null : Buffer.allocUnsafe(Math.min(count, chunkElements) * elementBytes);
    for (let first = 0; first < count; first += chunkElements) {
      const n = Math.min(chunkElements, count - first);
      const bytes = n * elementBytes;
      const target = scratch ?? new Uint8Array(out.buffer, first * 4, bytes);
      await this.readExactly(target, bytes, info.byteOffset + first * elementBytes, name);
      if (info.dtype === "BF16") decodeBf16(target, n, out, first);
      else if (info.dtype === "F16") decodeF16(target, n, out, first);
    }
    if (info.dtype === "F32" && !littleEndianHost) swapBytes32(out);
    return { data: out, shape: [...info.shape] };
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  private async readExactly(target: Uint8Array, bytes: number, position: number, name: string): Promise<void> {
    let done = 0;
    while (done < bytes) {
      const { bytesRead } = await this.handle.read(target, done, bytes - done, position + done);
      if (bytesRead === 0) throw new SafetensorsError(`${this.path}: tensor ${name} is truncated (file ends early)`);
      done += bytesRead;
    }
  }
}

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

async function readHeader(
  path: string,
  handle: FileHandle,
): Promise<{ tensors: Map<string, TensorInfo>; metadata: Record<string, string> }> {
  const { size: fileSize } = await handle.stat();
  if (fileSize < 8) throw new SafetensorsError(`${path}: not a safetensors file (${fileSize} bytes)`);
  const prefix = Buffer.alloc(8);
  await handle.read(prefix, 0, 8, 0);
  const headerLength = Number(prefix.readBigUInt64LE(0));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
    throw new SafetensorsError(`${path}: not a safetensors file (header length ${headerLength}, file ${fileSize} bytes)`);
  }
  const headerBytes = Buffer.alloc(headerLength);
  await handle.read(headerBytes, 0, headerLength, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBytes.toString("utf8"));
  } catch (err) {
    throw new SafetensorsError(`${path}: header is not JSON (${(err as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new SafetensorsError(`${path}: header is not a JSON object`);
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = (entry ?? {}) as Record<string, string>;
      continue;
    }
    tensors.set(name, parseEntry(path, name, entry, dataStart, fileSize));
  }
  return { tensors, metadata };
}

function parseEntry(path: string, name: string, entry: unknown, dataStart: number, fileSize: number): TensorInfo {
  const bad = (why: string) => new SafetensorsError(`${path}: tensor ${name}: ${why}`);
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof e !== "object" || e === null) throw bad("header entry is not an object");
  if (e.dtype !== "F32" && e.dtype !== "F16" && e.dtype !== "BF16") {
    throw bad(`dtype ${JSON.stringify(e.dtype)} is not supported (BF16, F16, F32 are)`);
  }
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(`shape ${JSON.stringify(e.shape)} is not a list of sizes`);
  }
  const offsets = e.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw bad(`data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  const shape = e.shape as number[];
  const count = shape.reduce((a, b) => a * b, 1);
  const dtype = e.dtype;
  if (end - begin !== count * BYTES_PER_ELEMENT[dtype]) {
    throw bad(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes, shape [${shape}] of ${dtype} needs ${count * BYTES_PER_ELEMENT[dtype]}`);
  }
  if (dataStart + end > fileSize) throw bad(`data ends at byte ${dataStart + end}, past the end of the file (${fileSize})`);
  return { dtype, shape, byteOffset: dataStart + begin, byteLength: end - begin };
}

// ---------- number formats ----------

const bitsScratch = new Uint32Array(1);
const floatScratch = new Float32Array(bitsScratch.buffer);

/** bfloat16 is the top half of a float32: shift the 16 bits back into place. */
function decodeBf16(src: Uint8Array, n: number, out: Float32Array, at: number): void {
  const bits = new Uint32Array(out.buffer, out.byteOffset + at * 4, n);
  for (let i = 0; i < n; i++) bits[i] = (src[2 * i] | (src[2 * i + 1] << 8)) << 16;
}

/** All 65536 float16 values, so decoding is one table lookup per element. */
let f16Table: Float32Array | null = null;

function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = f16BitsToNumber(h);
  f16Table = table;
  return table;
}

export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function decodeF16(src: Uint8Array, n: number, out: Float32Array, at: number): void {
  const table = f16ToF32Table();
  for (let i = 0; i < n; i++) out[at + i] = table[src[2 * i] | (src[2 * i + 1] << 8)];
}

/** float32 → bfloat16 bits, round to nearest even (as torch does). */
export function numberToBf16Bits(v: number): number {
  floatScratch[0] = v;
  const x = bitsScratch[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff; // NaN stays NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 → float16 bits, round to nearest even, overflow to ±Infinity, gradual underflow. */
export function numberToF16Bits(v: number): number {
  floatScratch[0] = v;
  const x = bitsScratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++; // a carry into the exponent is the right rounding
  return sign | half;
}

function swapBytes32(a: Float32Array): void {
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (let i = 0; i < b.length; i += 4) {
    let t = b[i];
    b[i] = b[i + 3];
    b[i + 3] = t;
    t = b[i + 1];
    b[i + 1] = b[i + 2];
    b[i + 2] = t;
  }
}

// ---------- sharded checkpoints ----------

/** The conventional index file name of a sharded Hugging Face checkpoint. */
export const SHARD_INDEX_FILE = "model.safetensors.index.json";
export const SINGLE_FILE = "model.safetensors";

/**
 * One or more safetensors files read as one set of named tensors. A `WeightSource` by itself:
 * `get` reads the tensor from its shard, float32, with its stored shape.
 */
export class SafetensorsCheckpoint implements WeightSource {
  private constructor(
    private readonly files: SafetensorsFile[],
    private readonly byName: Map<string, SafetensorsFile>,
  ) {}

  /** Opens `model.safetensors.index.json` if the directory has one, else `model.safetensors`. */
  static async openDir(dir: string): Promise<SafetensorsCheckpoint> {
    const index = join(dir, SHARD_INDEX_FILE);
    const indexText = await readFile(index, "utf8").catch(() => null);
    if (indexText !== null) return SafetensorsCheckpoint.openIndex(index, indexText);
    return SafetensorsCheckpoint.openFiles([join(dir, SINGLE_FILE)]);
  }

  static async openFiles(paths: string[]): Promise<SafetensorsCheckpoint> {
    const files: SafetensorsFile[] = [];
    const byName = new Map<string, SafetensorsFile>();
    try {
      for (const path of paths) {
        const file = await SafetensorsFile.open(path);
        files.push(file);
        for (const name of file.names()) {
          const other = byName.get(name);
          if (other) throw new SafetensorsError(`tensor ${name} is in both ${other.path} and ${path}`);
          byName.set(name, file);
        }
      }
    } catch (err) {
      await Promise.all(files.map((f) => f.close()));
      throw err;
    }
    return new SafetensorsCheckpoint(files, byName);
  }

  /** Follows an index's `weight_map` (name → shard file beside the index); each shard's header must agree. */
  static async openIndex(indexPath: string, indexText?: string): Promise<SafetensorsCheckpoint> {
    const text = indexText ?? (await readFile(indexPath, "utf8"));
    let weightMap: Record<string, string>;
    try {
      weightMap = (JSON.parse(text) as { weight_map?: Record<string, string> }).weight_map ?? {};
    } catch (err) {
      throw new SafetensorsError(`${indexPath}: not JSON (${(err as Error).message})`);
    }
    if (typeof weightMap !== "object" || Object.keys(weightMap).length === 0) {
      throw new SafetensorsError(`${indexPath}: weight_map is missing or empty`);
    }
    const dir = join(indexPath, "..");
    const shardNames = [...new Set(Object.values(weightMap))];
    for (const shard of shardNames) {
      if (typeof shard !== "string" || basename(shard) !== shard) {
        throw new SafetensorsError(`${indexPath}: weight_map names shard ${JSON.stringify(shard)}, not a file beside the index`);
      }
    }
    const checkpoint = await SafetensorsCheckpoint.openFiles(shardNames.map((s) => join(dir, s)));
    for (const [name, shard] of Object.entries(weightMap)) {
      const file = checkpoint.byName.get(name);
      if (!file || basename(file.path) !== shard) {
        await checkpoint.close();
        throw new SafetensorsError(`${indexPath}: weight_map puts tensor ${name} in ${shard}, but that shard does not hold it`);
      }
    }
    return checkpoint;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** Where a tensor lives, its dtype and shape, from the headers alone; undefined if absent. */
  find(name: string): (TensorInfo & { path: string }) | undefined {
    const file = this.byName.get(name);
    return file ? { ...file.info(name), path: file.path } : undefined;
  }

  async get(name: string): Promise<Tensor32> {
    const file = this.byName.get(name);
    if (!file) throw new SafetensorsError(`tensor ${name} is missing from the checkpoint`);
    return file.read(name);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

// ---------- writing ----------

export interface TensorToWrite {
  name: string;
  shape: number[];
  /** Values in row-major order; converted to `dtype` with round-to-nearest-even. */
  data: Float32Array;
}

/** Writes one safetensors file (tensors in the given order, header padded to 8 bytes as the spec asks). */
export async function writeSafetensors(
  path: string,
  tensors: TensorToWrite[],
  dtype: SafetensorsDtype,
  metadata: Record<string, string> = { format: "pt" },
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new SafetensorsError(`${path}: tensor ${t.name}: shape [${t.shape}] holds ${count} values, data has ${t.data.length}`);
    }
    const bytes = count * BYTES_PER_ELEMENT[dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let headerText = JSON.stringify(header);
  headerText += " ".repeat((8 - (Buffer.byteLength(headerText) % 8)) % 8);
  const headerBytes = Buffer.from(headerText, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  const handle = await open(path, "w");
  try {
    await handle.write(prefix);
    await handle.write(headerBytes);
    for (const t of tensors) await handle.write(encode(t.data, dtype));
  } finally {
    await handle.close();
  }
}

function encode(data: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  if (dtype === "F32") {
    const copy = new Float32Array(data);
    if (!littleEndianHost) swapBytes32(copy);
    return new Uint8Array(copy.buffer);
  }
  const toBits = dtype === "BF16" ? numberToBf16Bits : numberToF16Bits;
  const out = new Uint8Array(data.length * 2);
  for (let i = 0; i < data.length; i++) {
    const bits = toBits(data[i]);
    out[2 * i] = bits & 0xff;
    out[2 * i + 1] = bits >>> 8;
  }
  return out;
}

/**
 * Writes tensors as `numShards` files named as Hugging Face names them
 * (`model-00001-of-00003.safetensors`, ...) plus `model.safetensors.index.json` with the `weight_map`.
 * Tensors are split in order, balancing bytes.
 */
export async function writeSafetensorsSharded(
  dir: string,
  tensors: TensorToWrite[],
  dtype: SafetensorsDtype,
  numShards: number,
): Promise<void> {
  const total = tensors.reduce((s, t) => s + t.data.length, 0);
  const shards: TensorToWrite[][] = Array.from({ length: numShards }, () => []);
  let seen = 0;
  for (const t of tensors) {
    const shard = Math.min(numShards - 1, Math.floor((seen / total) * numShards));
    shards[shard].push(t);
    seen += t.data.length;
  }
  const pad = (i: number) => String(i).padStart(5, "0");
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < numShards; s++) {
    const file = `model-${pad(s + 1)}-of-${pad(numShards)}.safetensors`;
    await writeSafetensors(join(dir, file), shards[s], dtype);
    for (const t of shards[s]) weightMap[t.name] = file;
  }
  const index = { metadata: { total_size: total * BYTES_PER_ELEMENT[dtype] }, weight_map: weightMap };
  await writeFile(join(dir, SHARD_INDEX_FILE), JSON.stringify(index, null, 2) + "\n");
}
