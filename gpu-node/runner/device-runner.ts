/**
 * The runner of the "device" layout (device-decoder-graph.ts) on onnxruntime's WebGPU execution provider:
 * the paged KV cache never leaves the accelerator.
 *
 * - At load, a small allocator session (outputs kept on the device, `gpu-buffer`) returns one zeroed K
 *   and one V pool per layer, float16 [numBlocks, blockSize, kvHeads, headDim]. The same tensors are fed
 *   to every run; PagedAttention writes each new token's K/V into them in place.
 * - A step is ONE session.run over the whole batch: the rows' new tokens are packed with no padding, the
 *   block manager's block tables, past lengths and cumulative lengths go up as small int32 inputs, and
 *   the launch bounds (longest new run, longest past+new) are computed here so the graph never reads
 *   back mid-run. New token i of a row is written at position pastLen + i of its block table; the block
 *   manager never puts a prefix-cache hit at or after pastLen, so shared blocks are never rewritten.
 * - What comes back is the ranked head of each row (top 64 logits, their ids, the row's log-sum-exp).
 *   The whole logits rows stay on the device; `fullLogits` downloads the rows a caller asks for with a
 *   second small session (Gather on the device tensor), for sampling settings that need the vocabulary.
 * - Rows with logit_bias or penalties, or a temperature other than 1, are ranked again by a third small
 *   session on the same device tensor (device-ranker-graph.ts): their sparse adjustments go up (20 bytes
 *   an entry), the adjusted head and the log-sum-exp at the row's temperature come back, so they too
 *   draw from candidates; `fetchRows` serves the rare draw that lands in a row's tail.
 * - `lastStepStats` counts the bytes each step moves in each direction.
 *
 * `session.run` blocks the calling thread for the whole step: call it from the engine's worker thread.
 */
import * as ort from "onnxruntime-node";
import type { Phi3Config } from "../model/phi3-config.ts";
import { ModelFilesError, readModelFiles } from "../model/model-files.ts";
import { DataType, OnnxGraph } from "../model/graph/onnx-graph.ts";
import { DEVICE_TOP_K, buildKvPoolGraph, deviceIo, type DeviceDtype } from "../model/graph/device-decoder-graph.ts";
import { buildDeviceRankerGraph, rankerIo } from "./device-ranker-graph.ts";
import { MIN_DEVICE_BLOCK_SIZE } from "./execution-provider.ts";
import { checkBatchRow, isBlockId, LogitsNeed, type BatchRow, type RunnerOutput, type StepRunner, type StepStats } from "./step-runner.ts";
import { checkSessionIo } from "./session-io.ts";

export interface DeviceRunnerOptions {
  modelDir: string;
  numBlocks: number;
  /** Tokens per cache block: a power of two ≥ 32 (MIN_DEVICE_BLOCK_SIZE). */
  blockSize: number;
}

/** One step's ranked rows: row r's candidates are at [r·k, r·k + k), best first (the engine's PreselectedCandidates). */
export interface RankedRows {
  k: number;
  values: Float32Array;
  ids: Int32Array;
  /** log Σ exp(logit) over each whole row. */
  logSumExp: Float64Array;
  /** log Σ exp(logit / T) at each row's BatchRow.temperature (run) ; forward alone: at T = 1. */
  scaledLogSumExp: Float64Array;
}

export interface DeviceStepStats extends StepStats {
  /** Bytes fed from the host to the run(s) of the last step (token ids, lengths, block tables, bounds). */
  bytesToDevice: number;
  /** Bytes copied back to the host for the last step (ranked rows, plus any whole rows fetched); = outputBytes. */
  bytesFromDevice: number;
}

/** onnxruntime-node cannot hand over one tensor of 2 GiB or more; a pool is one tensor per layer and K/V. */
const MAX_POOL_BYTES = 2 ** 31 - 1;

export class DeviceRunner implements StepRunner {
  readonly lastStepStats: DeviceStepStats = { totalMs: 0, sessionRunMs: 0, outputBytes: 0, runs: 0, bytesToDevice: 0, bytesFromDevice: 0 };
  /**
   * The host's view of the last step's rows for the sampler, [rows × vocab]: -Infinity except the ranked
   * candidates' values (Candidates rows) or the whole row fetched from the device (FullRow rows). The
   * sampler reads candidate logits from the row, so they are scattered into it; nothing more crosses over.
   */
  private hostRows = new Float32Array(0);
  /** Per host row: what the last step wrote there (0 nothing, 1 candidates, 2 whole row), to clear it cheaply. */
  private hostRowKind = new Uint8Array(0);
  private hostRowIds = new Int32Array(0);
  readonly kvBytesPerBlock: number;
  readonly ranksCandidates = true;
  private readonly poolFeeds: Record<string, ort.Tensor>;
  /** The last step's whole logits rows, still on the device (released at the next step). */
  private lastLogits: ort.Tensor | null = null;

  private constructor(
    /** Owns the pools' device memory: it lives as long as they do (disposing them after it is released crashes). */
    private readonly allocator: ort.InferenceSession,
    private readonly session: ort.InferenceSession,
    private readonly rowFetch: ort.InferenceSession,
    private readonly blockRead: ort.InferenceSession,
    private readonly ranker: ort.InferenceSession,
    pools: Record<string, ort.Tensor>,
    readonly config: Phi3Config,
    readonly dtype: DeviceDtype,
    readonly numBlocks: number,
    readonly blockSize: number,
  ) {
    this.poolFeeds = pools;
    this.kvBytesPerBlock = 2 * config.numLayers * blockSize * config.numKvHeads * config.headDim * 2;
  }

  static async load(options: DeviceRunnerOptions): Promise<DeviceRunner> {
    const { numBlocks, blockSize } = options;
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`numBlocks must be a positive integer, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < MIN_DEVICE_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
      throw new Error(`the device layout needs a KV block size that is a power of two ≥ ${MIN_DEVICE_BLOCK_SIZE} (WebGPU PagedAttention), got ${blockSize}`);
    }
    const files = await readModelFiles(options.modelDir);
    if (files.layout !== "device") {
      throw new ModelFilesError(`${files.dir} holds the ${files.layout} layout; ORT_EP=webgpu serves only the device layout (convert with --layout device)`);
    }
    const c = files.config;
    const poolBytes = numBlocks * blockSize * c.numKvHeads * c.headDim * 2;
    if (poolBytes > MAX_POOL_BYTES) {
      throw new Error(`a K/V pool of ${numBlocks} blocks × ${blockSize} tokens is ${poolBytes} bytes per layer, over onnxruntime's 2 GiB per tensor; lower KV_CACHE_TOKENS`);
    }
    const base: ort.InferenceSession.SessionOptions = { executionProviders: ["webgpu"], logSeverityLevel: 3 };
    const created: ort.InferenceSession[] = [];
    let pools: Record<string, ort.Tensor> = {};
    try {
      const allocator = await ort.InferenceSession.create(buildKvPoolGraph(c), { ...base, graphOptimizationLevel: "disabled", preferredOutputLocation: "gpu-buffer" });
      created.push(allocator);
      const shape = BigInt64Array.from([numBlocks, blockSize, c.numKvHeads, c.headDim].map(BigInt));
      pools = await allocator.run({ pool_shape: new ort.Tensor("int64", shape, [4]) });
      const session = await ort.InferenceSession.create(files.onnxPath, {
        ...base,
        graphOptimizationLevel: "all",
        preferredOutputLocation: { [deviceIo.logits]: "gpu-buffer" },
      }).catch((err: Error) => {
        throw new ModelFilesError(`${files.onnxPath}: onnxruntime could not load the model (webgpu): ${err.message}`);
      });
      created.push(session);
      checkDeviceGraph(session, c, files.onnxPath);
      const rowFetch = await ort.InferenceSession.create(gatherGraph(DataType.FLOAT, 2), base);
      created.push(rowFetch);
      const blockRead = await ort.InferenceSession.create(gatherGraph(DataType.FLOAT16, 4), base);
      created.push(blockRead);
      const ranker = await ort.InferenceSession.create(buildDeviceRankerGraph(c.vocabSize, Math.min(DEVICE_TOP_K, c.vocabSize)), base);
      created.push(ranker);
      return new DeviceRunner(allocator, session, rowFetch, blockRead, ranker, pools, c, files.dtype as DeviceDtype, numBlocks, blockSize);
    } catch (err) {
      for (const t of Object.values(pools)) t.dispose();
      for (const s of created) await s.release().catch(() => {});
      throw err;
    }
  }

  /**
   * The step loop's entry (StepRunner): one forward pass, then the rows the sampler asked whole
   * (BatchRow.needs FullRow, or unset) fetched from the device. Candidates cover every row.
   */
  async run(rows: BatchRow[]): Promise<RunnerOutput> {
    const started = performance.now();
    let ranked = await this.forward(rows);
    if (rows.some(needsRanking)) ranked = await this.rankAdjusted(rows);
    const V = this.config.vocabSize;
    const k = ranked.k;
    this.ensureHostRows(rows.length);
    const full: number[] = [];
    for (let r = 0; r < rows.length; r++) {
      const need = rows[r].needs ?? LogitsNeed.FullRow;
      this.clearHostRow(r);
      // The sampler will not rank from candidates holding a ±0 or NaN (TopK's order of -0/+0 is not its
      // own) and then scans the row: such a row comes back whole.
      if (need === LogitsNeed.FullRow || (need === LogitsNeed.Candidates && hasZeroOrNaN(ranked.values, r * k, k))) full.push(r);
      else if (need === LogitsNeed.Candidates) {
        const base = r * V;
        for (let i = 0; i < k; i++) {
          const id = ranked.ids[r * k + i];
          this.hostRows[base + id] = ranked.values[r * k + i];
          this.hostRowIds[r * k + i] = id;
        }
        this.hostRowKind[r] = 1;
      }
    }
    if (full.length > 0) {
      const fetched = await this.fullLogits(full);
      for (let i = 0; i < full.length; i++) {
        this.hostRows.set(fetched.subarray(i * V, (i + 1) * V), full[i] * V);
        this.hostRowKind[full[i]] = 2;
      }
    }
    this.lastStepStats.totalMs = performance.now() - started;
    return { logits: this.hostRows.subarray(0, rows.length * V), candidates: ranked, fetchRows: this.fetchRows };
  }

  private readonly fetchRows = (rows: ArrayLike<number>): Promise<Float32Array> => this.fullLogits(rows);

  /**
   * Ranks the last forward's rows again on the device after each Candidates row's bias and penalties, and
   * computes their log-sum-exp at their temperature (device-ranker-graph.ts); other rows rank as they are.
   */
  async rankAdjusted(rows: ReadonlyArray<BatchRow>): Promise<RankedRows> {
    const logits = this.lastLogits;
    if (!logits) throw new Error("rankAdjusted: no forward step to read from");
    const V = this.config.vocabSize;
    let n = 0;
    for (const row of rows) if (row.needs === LogitsNeed.Candidates && row.adjust) n += row.adjust.count;
    // At least one entry (an identity on token 0 of row 0): zero-sized tensors are not worth the risk on a device.
    const size = Math.max(n, 1);
    const index = new BigInt64Array(size);
    const bias = new Float32Array(size);
    const penalty = new Float32Array(size).fill(1);
    const addend = new Float32Array(size);
    const invT = new Float32Array(rows.length);
    let at = 0;
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r];
      const t = row.temperature ?? 1;
      invT[r] = row.needs === LogitsNeed.Candidates && t > 0 ? 1 / t : 1;
      const a = row.needs === LogitsNeed.Candidates ? row.adjust : null;
      if (!a) continue;
      for (let i = 0; i < a.count; i++, at++) {
        const id = a.ids[i];
        if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`row ${r}: adjusted token ${id} outside the vocabulary 0..${V - 1}`);
        index[at] = BigInt(r * V + id);
        bias[at] = a.bias[i];
        penalty[at] = a.penalty[i];
        addend[at] = a.addend[i];
      }
    }
    const t0 = performance.now();
    const out = await this.ranker.run({
      [rankerIo.logits]: logits,
      [rankerIo.adjustIndex]: new ort.Tensor("int64", index, [size]),
      [rankerIo.adjustBias]: new ort.Tensor("float32", bias, [size]),
      [rankerIo.adjustPenalty]: new ort.Tensor("float32", penalty, [size]),
      [rankerIo.adjustAddend]: new ort.Tensor("float32", addend, [size]),
      [rankerIo.invTemperature]: new ort.Tensor("float32", invT, [rows.length]),
    });
    const stats = this.lastStepStats;
    stats.sessionRunMs += performance.now() - t0;
    stats.runs++;
    const values = out[deviceIo.topValues].data as Float32Array;
    const ids = out[deviceIo.topIds].data as Int32Array;
    const lse = out[deviceIo.logSumExp].data as Float32Array;
    const scaled = out[rankerIo.scaledLogSumExp].data as Float32Array;
    stats.bytesToDevice += index.byteLength + bias.byteLength + penalty.byteLength + addend.byteLength + invT.byteLength;
    stats.bytesFromDevice += values.byteLength + ids.byteLength + lse.byteLength + scaled.byteLength;
    stats.outputBytes = stats.bytesFromDevice;
    return { k: Math.min(DEVICE_TOP_K, V), values, ids, logSumExp: Float64Array.from(lse), scaledLogSumExp: Float64Array.from(scaled) };
  }

  /**
   * One step over a ragged batch (decode rows, prefill chunks, any mix) in one run: returns each row's
   * ranked candidates at its last new token. The rows' whole logits stay on the device until the next
   * call; `fullLogits` fetches the ones needed.
   */
  async forward(rows: ReadonlyArray<BatchRow>): Promise<RankedRows> {
    const started = performance.now();
    const stats = this.lastStepStats;
    this.lastLogits?.dispose();
    this.lastLogits = null;
    const B = rows.length;
    if (B === 0) throw new Error("forward needs at least one row");
    const bs = this.blockSize;
    let T = 0;
    let M = 1;
    let maxNew = 0;
    let maxTotal = 0;
    for (let r = 0; r < B; r++) {
      const row = rows[r];
      checkBatchRow(row, r, this);
      const n = row.tokens.length;
      T += n;
      M = Math.max(M, Math.ceil((row.pastLen + n) / bs));
      maxNew = Math.max(maxNew, n);
      maxTotal = Math.max(maxTotal, row.pastLen + n);
    }
    const inputIds = new BigInt64Array(T);
    const cumulative = new Int32Array(B + 1);
    const pastLens = new Int32Array(B);
    const blockTable = new Int32Array(B * M); // entries past a row's blocks stay 0: never read (beyond its length)
    const sampleIndex = new BigInt64Array(B);
    let at = 0;
    for (let r = 0; r < B; r++) {
      const row = rows[r];
      const n = row.tokens.length;
      for (let s = 0; s < n; s++) inputIds[at + s] = BigInt(row.tokens[s]);
      at += n;
      cumulative[r + 1] = at;
      pastLens[r] = row.pastLen;
      sampleIndex[r] = BigInt(at - 1);
      const own = Math.ceil((row.pastLen + n) / bs);
      for (let m = 0; m < own; m++) blockTable[r * M + m] = row.blockTable[m];
    }
    const metadata = Int32Array.from([maxNew, maxTotal]);
    const feeds: Record<string, ort.Tensor> = {
      ...this.poolFeeds,
      [deviceIo.inputIds]: new ort.Tensor("int64", inputIds, [T]),
      [deviceIo.cumulativeSeqLen]: new ort.Tensor("int32", cumulative, [B + 1]),
      [deviceIo.pastSeqLens]: new ort.Tensor("int32", pastLens, [B]),
      [deviceIo.blockTable]: new ort.Tensor("int32", blockTable, [B, M]),
      [deviceIo.sampleIndex]: new ort.Tensor("int64", sampleIndex, [B]),
      [deviceIo.attentionMetadata]: new ort.Tensor("int32", metadata, [2]),
    };

    const t0 = performance.now();
    const out = await this.session.run(feeds);
    stats.sessionRunMs = performance.now() - t0;
    stats.runs = 1;
    this.lastLogits = out[deviceIo.logits];
    const values = out[deviceIo.topValues].data as Float32Array;
    const ids = out[deviceIo.topIds].data as Int32Array;
    const lse32 = out[deviceIo.logSumExp].data as Float32Array;
    stats.bytesToDevice = inputIds.byteLength + cumulative.byteLength + pastLens.byteLength + blockTable.byteLength + sampleIndex.byteLength + metadata.byteLength;
    stats.bytesFromDevice = values.byteLength + ids.byteLength + lse32.byteLength;
    stats.outputBytes = stats.bytesFromDevice;
    stats.totalMs = performance.now() - started;
    const logSumExp = Float64Array.from(lse32);
    return { k: Math.min(DEVICE_TOP_K, this.config.vocabSize), values, ids, logSumExp, scaledLogSumExp: logSumExp };
  }

  /** The whole logits rows `rows` (indices into the last forward's rows), [rows.length, vocab] on the host. */
  async fullLogits(rows: ArrayLike<number>): Promise<Float32Array> {
    const logits = this.lastLogits;
    if (!logits) throw new Error("fullLogits: no forward step to read from");
    const B = logits.dims[0];
    const index = new BigInt64Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      if (!Number.isInteger(rows[i]) || rows[i] < 0 || rows[i] >= B) throw new Error(`fullLogits: row ${rows[i]} outside 0..${B - 1}`);
      index[i] = BigInt(rows[i]);
    }
    const out = await this.rowFetch.run({ x: logits, index: new ort.Tensor("int64", index, [rows.length]) });
    const data = out.y.data as Float32Array;
    this.lastStepStats.bytesToDevice += index.byteLength;
    this.lastStepStats.bytesFromDevice += data.byteLength;
    this.lastStepStats.outputBytes = this.lastStepStats.bytesFromDevice;
    this.lastStepStats.runs++;
    return data;
  }

  /**
   * Copies blocks of layer `layer`'s K and V pools to the host, float16 bits [blocks, blockSize, kvHeads,
   * headDim]: for tests and diagnostics (it moves the cache, which serving never does).
   */
  async readBlocks(layer: number, blocks: ArrayLike<number>): Promise<{ key: Uint16Array; value: Uint16Array }> {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.config.numLayers) throw new Error(`readBlocks: layer ${layer} outside 0..${this.config.numLayers - 1}`);
    const index = new BigInt64Array(blocks.length);
    for (let i = 0; i < blocks.length; i++) {
      if (!isBlockId(blocks[i], this.numBlocks)) throw new Error(`readBlocks: block ${blocks[i]} outside 0..${this.numBlocks - 1}`);
      index[i] = BigInt(blocks[i]);
    }
    const idx = new ort.Tensor("int64", index, [blocks.length]);
    const key = await this.blockRead.run({ x: this.poolFeeds[deviceIo.keyCache(layer)], index: idx });
    const value = await this.blockRead.run({ x: this.poolFeeds[deviceIo.valueCache(layer)], index: idx });
    return { key: key.y.data as Uint16Array, value: value.y.data as Uint16Array };
  }

  async release(): Promise<void> {
    this.lastLogits?.dispose();
    this.lastLogits = null;
    for (const t of Object.values(this.poolFeeds)) t.dispose();
    await this.allocator.release();
    await this.session.release();
    await this.rowFetch.release();
    await this.blockRead.release();
    await this.ranker.release();
  }

  private ensureHostRows(rows: number): void {
    const V = this.config.vocabSize;
    if (this.hostRowKind.length >= rows) return;
    const n = Math.max(rows, 2 * this.hostRowKind.length);
    const grown = new Float32Array(n * V).fill(-Infinity);
    grown.set(this.hostRows);
    const kinds = new Uint8Array(n);
    kinds.set(this.hostRowKind);
    const ids = new Int32Array(n * DEVICE_TOP_K);
    ids.set(this.hostRowIds);
    this.hostRows = grown;
    this.hostRowKind = kinds;
    this.hostRowIds = ids;
  }

  private clearHostRow(r: number): void {
    const V = this.config.vocabSize;
    const kind = this.hostRowKind[r];
    if (kind === 2) this.hostRows.fill(-Infinity, r * V, (r + 1) * V);
    else if (kind === 1) {
      const k = Math.min(DEVICE_TOP_K, V);
      for (let i = 0; i < k; i++) this.hostRows[r * V + this.hostRowIds[r * k + i]] = -Infinity;
    }
    this.hostRowKind[r] = 0;
  }

}

/** A Candidates row whose ranking needs the ranker: bias/penalties, or a temperature whose mass the sampler reads. */
function needsRanking(row: BatchRow): boolean {
  if (row.needs !== LogitsNeed.Candidates) return false;
  const t = row.temperature ?? 1;
  return (row.adjust != null && row.adjust.count > 0) || (t > 0 && t !== 1);
}

function hasZeroOrNaN(values: Float32Array, start: number, count: number): boolean {
  for (let i = start; i < start + count; i++) if (values[i] === 0 || values[i] !== values[i]) return true;
  return false;
}

/** y = Gather(x, index, axis 0) on the device: downloads only the rows/blocks asked for. */
function gatherGraph(type: typeof DataType.FLOAT | typeof DataType.FLOAT16, rank: number): Uint8Array {
  const g = new OnnxGraph();
  const dims = Array.from({ length: rank }, (_, i) => `d${i}`);
  g.input("x", type, dims);
  g.input("index", DataType.INT64, ["n"]);
  g.node("Gather", ["x", "index"], { axis: 0 }, ["y"]);
  g.output("y", type, ["n", ...dims.slice(1)]);
  return g.encode("device_gather", "rows of a device tensor");
}

/** The graph's inputs/outputs must be the device layout's, sized as model-config.json says. */
function checkDeviceGraph(session: ort.InferenceSession, c: Phi3Config, onnxPath: string): void {
  const expectIn: string[] = [deviceIo.inputIds, deviceIo.cumulativeSeqLen, deviceIo.pastSeqLens, deviceIo.blockTable, deviceIo.sampleIndex, deviceIo.attentionMetadata];
  for (let l = 0; l < c.numLayers; l++) expectIn.push(deviceIo.keyCache(l), deviceIo.valueCache(l));
  const expectOut: string[] = [deviceIo.topValues, deviceIo.topIds, deviceIo.logSumExp, deviceIo.logits];
  checkSessionIo(session, expectIn, expectOut, `${onnxPath} does not match model-config.json (device layout, numLayers ${c.numLayers})`);
}
