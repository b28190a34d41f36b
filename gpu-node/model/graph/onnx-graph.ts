/**
 * A small ONNX graph writer on top of `onnx-proto` (protobufjs static code): nodes with generated
 * value names, typed inputs/outputs with symbolic dims, constants, and initializers that carry either
 * inline bytes or a reference into an external-data file. Deterministic: the same calls give the same bytes.
 */
import onnxProto from "onnx-proto";

export const onnx = onnxProto.onnx;
export const DataType = onnx.TensorProto.DataType;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

export type AttrValue = number | string | number[] | { float: number };
/** A dimension: a number, or a symbolic name (batch, sequence, ...). */
export type Dim = number | string;

export const MS_DOMAIN = "com.microsoft";

export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

export class OnnxGraph {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private counter = 0;
  private readonly constCache = new Map<string, string>();

  /** A fresh value name with a readable prefix. */
  name(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, type: DataTypeCode, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(name: string, type: DataTypeCode, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, type, dims));
  }

  /**
   * Adds a node. `outputs` is a count (names are generated from `prefix`) or explicit names.
   * Attributes: integer numbers → INT, `{float}` → FLOAT, number[] → INTS, string → STRING.
   */
  node(
    op: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    outputs: number | string[] = 1,
    domain = "",
    prefix = op,
  ): string[] {
    const outs = typeof outputs === "number" ? Array.from({ length: outputs }, () => this.name(prefix)) : outputs;
    const attribute = Object.entries(attrs).map(([name, v]) => attribute1(name, v));
    this.nodes.push(onnx.NodeProto.create({ opType: op, input: inputs, output: outs, attribute, domain, name: this.name(`n_${op}`) }));
    return outs;
  }

  /** One-output node shorthand. */
  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain = "", outName?: string): string {
    return this.node(op, inputs, attrs, outName ? [outName] : 1, domain)[0];
  }

  /** An int64 constant initializer (shared between uses). */
  constInt64(values: number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join("x")}:${values.join(",")}`;
    const cached = this.constCache.get(key);
    if (cached) return cached;
    const name = this.name("const_i64");
    const raw = new Uint8Array(new BigInt64Array(values.map((v) => BigInt(v))).buffer);
    this.initializers.push(onnx.TensorProto.create({ name, dataType: DataType.INT64, dims, rawData: raw }));
    this.constCache.set(key, name);
    return name;
  }

  /** A float32 constant initializer (shared between uses). */
  constFloat(values: number[] | Float32Array, dims: number[] = [values.length]): string {
    const arr = values instanceof Float32Array ? values : Float32Array.from(values);
    const key = arr.length <= 16 ? `f32:${dims.join("x")}:${Array.from(arr).join(",")}` : undefined;
    if (key && this.constCache.has(key)) return this.constCache.get(key)!;
    const name = this.name("const_f32");
    this.addInitializer(name, DataType.FLOAT, dims, new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
    if (key) this.constCache.set(key, name);
    return name;
  }

  /** An initializer whose bytes are stored inline in the .onnx file. */
  addInitializer(name: string, type: DataTypeCode, dims: number[], raw: Uint8Array): void {
    this.initializers.push(onnx.TensorProto.create({ name, dataType: type, dims, rawData: raw }));
  }

  /** An initializer whose bytes live in an external-data file next to the .onnx. */
  addExternalInitializer(name: string, type: DataTypeCode, dims: number[], ref: ExternalRef): void {
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dataType: type,
        dims,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: "location", value: ref.location },
          { key: "offset", value: String(ref.offset) },
          { key: "length", value: String(ref.length) },
        ],
      }),
    );
  }

  /** Serialises the model: IR 8, default opset 17 plus com.microsoft 1. */
  encode(graphName: string, docString: string): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: "phi4-serve",
      producerVersion: "1",
      docString,
      opsetImport: [
        { domain: "", version: 17 },
        { domain: MS_DOMAIN, version: 1 },
      ],
      graph: onnx.GraphProto.create({
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, elemType: DataTypeCode, dims: Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function attribute1(name: string, v: AttrValue) {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof v === "string") return onnx.AttributeProto.create({ name, type: A.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: A.INTS, ints: v });
  if (typeof v === "object") return onnx.AttributeProto.create({ name, type: A.FLOAT, f: v.float });
  if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer; pass {float: x} for floats`);
  return onnx.AttributeProto.create({ name, type: A.INT, i: v });
}

/** Where weight bytes go (inline in the .onnx or into the external-data file): the writer decides. */
export interface InitializerSink {
  add(name: string, type: DataTypeCode, dims: number[], bytes: Uint8Array): Promise<void>;
}
