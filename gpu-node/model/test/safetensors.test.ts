import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  SafetensorsCheckpoint,
  SafetensorsFile,
  f16BitsToNumber,
  numberToBf16Bits,
  numberToF16Bits,
  writeSafetensors,
  writeSafetensorsSharded,
  type TensorToWrite,
} from "../safetensors.ts";
import { seededUniform } from "../../../shared/seeded-uniform.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "safetensors-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function randomTensors(seed: number): TensorToWrite[] {
  const random = seededUniform(seed);
  const shapes: Array<[string, number[]]> = [
    ["model.embed_tokens.weight", [37, 8]],
    ["model.norm.weight", [8]],
    ["lm_head.weight", [37, 8]],
    ["scalar", []],
    ["empty", [0, 4]],
  ];
  return shapes.map(([name, shape]) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = (random() - 0.5) * 8;
    return { name, shape, data };
  });
}

/** Builds a safetensors file by hand, byte by byte, as the format specification lays it out. */
async function writeRawFile(path: string, header: object, data: number[]): Promise<void> {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  await writeFile(path, Buffer.concat([prefix, json, Buffer.from(data)]));
}

describe("safetensors number formats", () => {
  it("decodes float16 bit patterns per IEEE binary16", () => {
    expect(f16BitsToNumber(0x3c00)).toBe(1);
    expect(f16BitsToNumber(0xc000)).toBe(-2);
    expect(f16BitsToNumber(0x7bff)).toBe(65504);
    expect(f16BitsToNumber(0x0001)).toBe(2 ** -24);
    expect(f16BitsToNumber(0x0400)).toBe(2 ** -14);
    expect(f16BitsToNumber(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(f16BitsToNumber(0x7c00)).toBe(Infinity);
    expect(f16BitsToNumber(0xfc00)).toBe(-Infinity);
    expect(f16BitsToNumber(0x7e00)).toBeNaN();
    expect(Object.is(f16BitsToNumber(0x8000), -0)).toBe(true);
  });

  it("encodes float16 and bfloat16 with round-to-nearest-even", () => {
    expect(numberToF16Bits(1)).toBe(0x3c00);
    expect(numberToF16Bits(65504)).toBe(0x7bff);
    expect(numberToF16Bits(65520)).toBe(0x7c00); // rounds up past the largest finite
    expect(numberToF16Bits(2 ** -24)).toBe(0x0001);
    expect(numberToF16Bits(2 ** -26)).toBe(0x0000);
    expect(numberToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(numberToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(numberToBf16Bits(1)).toBe(0x3f80);
    expect(numberToBf16Bits(Math.PI)).toBe(0x4049);
    expect(numberToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(numberToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(numberToBf16Bits(-2)).toBe(0xc000);
    // Every finite float16 survives encode(decode(bits)).
    for (let h = 0; h < 0x7c00; h++) {
      expect(numberToF16Bits(f16BitsToNumber(h))).toBe(h);
    }
  });
});

describe("SafetensorsFile", () => {
  it("reads a hand-made file in each dtype (BF16, F16, F32 little-endian)", async () => {
    const path = join(dir, "raw.safetensors");
    // bf16 [1, -2, 3.140625], f16 [0.5, -65504], f32 [0.1]
    const bf16 = [0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40];
    const f16 = [0x00, 0x38, 0xff, 0xfb];
    const f32 = [...new Uint8Array(new Float32Array([0.1]).buffer)];
    await writeRawFile(
      path,
      {
        __metadata__: { format: "pt" },
        a: { dtype: "BF16", shape: [3], data_offsets: [0, 6] },
        b: { dtype: "F16", shape: [2, 1], data_offsets: [6, 10] },
        c: { dtype: "F32", shape: [1], data_offsets: [10, 14] },
      },
      [...bf16, ...f16, ...f32],
    );
    const file = await SafetensorsFile.open(path);
    try {
      expect(file.metadata).toEqual({ format: "pt" });
      expect(file.names().sort()).toEqual(["a", "b", "c"]);
      expect(await file.read("a")).toEqual({ data: new Float32Array([1, -2, 3.140625]), shape: [3] });
      expect(await file.read("b")).toEqual({ data: new Float32Array([0.5, -65504]), shape: [2, 1] });
      expect((await file.read("c")).data[0]).toBe(Math.fround(0.1));
    } finally {
      await file.close();
    }
  });

  it.each(["F32", "F16", "BF16"] as const)("round-trips tensors written as %s", async (dtype) => {
    const path = join(dir, `roundtrip-${dtype}.safetensors`);
    const tensors = randomTensors(7);
    await writeSafetensors(path, tensors, dtype, { format: "pt", note: "test" });
    const bytes = await readFile(path);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0); // header padded so data is 8-byte aligned
    const file = await SafetensorsFile.open(path);
    try {
      expect(file.metadata).toEqual({ format: "pt", note: "test" });
      for (const t of tensors) {
        const read = await file.read(t.name);
        expect(read.shape).toEqual(t.shape);
        expect(file.info(t.name).dtype).toBe(dtype);
        // The encoder rounds to nearest: error at most half a unit in the last place.
        const relTol = dtype === "F32" ? 0 : dtype === "F16" ? 2 ** -11 : 2 ** -8;
        for (let i = 0; i < t.data.length; i++) {
          expect(Math.abs(read.data[i] - t.data[i])).toBeLessThanOrEqual(Math.abs(t.data[i]) * relTol + 2 ** -24);
        }
      }
    } finally {
      await file.close();
    }
  });

  it("reads a tensor larger than one read chunk, in pieces", async () => {
    const path = join(dir, "large.safetensors");
    const count = (16 << 20) / 2 + 12345; // more BF16 elements than one 16 MiB chunk holds
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = (i % 251) - 125;
    await writeSafetensors(path, [{ name: "big", shape: [count], data }], "BF16");
    const file = await SafetensorsFile.open(path);
    try {
      const read = await file.read("big");
      let mismatches = 0; // small integers are exact in bf16
      for (let i = 0; i < count; i++) if (read.data[i] !== data[i]) mismatches++;
      expect(read.data.length).toBe(count);
      expect(mismatches).toBe(0);
    } finally {
      await file.close();
    }
  });

  it("reads a tensor stored beyond 4 GiB into the file (offsets are not 32-bit)", async () => {
    const path = join(dir, "sparse.safetensors");
    const gap = 2 ** 32 + 4096; // bytes of an untouched tensor first: a hole in a sparse file, no disk used
    const header = {
      "model.embed_tokens.weight": { dtype: "BF16", shape: [gap / 2], data_offsets: [0, gap] },
      "lm_head.weight": { dtype: "F16", shape: [2, 2], data_offsets: [gap, gap + 8] },
    };
    await writeRawFile(path, header, []);
    const handle = await open(path, "r+");
    try {
      const dataStart = 8 + Number((await readFile(path)).readBigUInt64LE(0));
      await handle.write(Buffer.from([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0xff, 0x7b]), 0, 8, dataStart + gap); // 1, -2, 0.5, 65504
    } finally {
      await handle.close();
    }
    const file = await SafetensorsFile.open(path);
    try {
      expect(await file.read("lm_head.weight")).toEqual({ data: new Float32Array([1, -2, 0.5, 65504]), shape: [2, 2] });
    } finally {
      await file.close();
      await rm(path);
    }
  });

  it("names the file and tensor for a missing tensor, an unsupported dtype, a truncated file", async () => {
    const path = join(dir, "bad.safetensors");
    await writeRawFile(path, { i8: { dtype: "I8", shape: [2], data_offsets: [0, 2] } }, [1, 2]);
    await expect(SafetensorsFile.open(path)).rejects.toThrow(`${path}: tensor i8: dtype "I8" is not supported`);

    await writeRawFile(path, { w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, [0, 0, 0, 0]);
    await expect(SafetensorsFile.open(path)).rejects.toThrow(/bad\.safetensors: tensor w: data ends at byte \d+, past the end/);

    await writeRawFile(path, { w: { dtype: "F32", shape: [3], data_offsets: [0, 16] } }, new Array(16).fill(0));
    await expect(SafetensorsFile.open(path)).rejects.toThrow("tensor w: data_offsets [0, 16] hold 16 bytes, shape [3] of F32 needs 12");

    await writeFile(path, "not a safetensors file at all");
    await expect(SafetensorsFile.open(path)).rejects.toThrow(`${path}: not a safetensors file`);

    await writeSafetensors(path, randomTensors(1), "F32");
    const file = await SafetensorsFile.open(path);
    try {
      await expect(file.read("nope")).rejects.toThrow(`${path}: tensor nope is missing`);
    } finally {
      await file.close();
    }
  });
});

describe("SafetensorsCheckpoint (sharded with an index)", () => {
  it("routes every tensor to its shard through the index's weight_map", async () => {
    const shardDir = join(dir, "sharded");
    await mkdir(shardDir);
    const tensors = randomTensors(3);
    await writeSafetensorsSharded(shardDir, tensors, "BF16", 3);
    const index = JSON.parse(await readFile(join(shardDir, "model.safetensors.index.json"), "utf8"));
    const shardFiles = new Set(Object.values(index.weight_map));
    expect(shardFiles).toEqual(new Set(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]));
    expect(Object.keys(index.weight_map).sort()).toEqual(tensors.map((t) => t.name).sort());

    const checkpoint = await SafetensorsCheckpoint.openDir(shardDir);
    try {
      expect(checkpoint.names().sort()).toEqual(tensors.map((t) => t.name).sort());
      for (const t of tensors) {
        expect(checkpoint.find(t.name)!.path.endsWith(index.weight_map[t.name])).toBe(true);
        const read = await checkpoint.get(t.name);
        expect(read.shape).toEqual(t.shape);
        for (let i = 0; i < t.data.length; i++) expect(read.data[i]).toBeCloseTo(t.data[i], 1);
      }
      await expect(checkpoint.get("absent.weight")).rejects.toThrow("tensor absent.weight is missing");
    } finally {
      await checkpoint.close();
    }
  });

  it("refuses an index whose weight_map points a tensor at a shard that lacks it", async () => {
    const shardDir = join(dir, "lying-index");
    await mkdir(shardDir);
    await writeSafetensorsSharded(shardDir, randomTensors(4), "F32", 2);
    const indexPath = join(shardDir, "model.safetensors.index.json");
    const index = JSON.parse(await readFile(indexPath, "utf8"));
    index.weight_map["model.norm.weight"] =
      index.weight_map["model.norm.weight"] === "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    await writeFile(indexPath, JSON.stringify(index));
    await expect(SafetensorsCheckpoint.openDir(shardDir)).rejects.toThrow("weight_map puts tensor model.norm.weight in");
  });
});
