/**
 * The only code that touches onnxruntime-node. It owns the paged KV cache (one K and one V Float32Array per
 * layer, laid out [numKvHeads, numBlocks, blockSize, headDim]) and feeds those buffers to every run as
 * inputs (ORT does not copy inputs). The graph returns only this step's K/V rows and one logits row per
 * sequence (ORT copies every output), and the runner writes the new rows into the sequences' blocks:
 * the work per step is proportional to the new tokens, never to the cache.
 *
 * Batching: `forward` splits a ragged batch into session runs: rows with one new token (decode) run
 * together with S = 1; rows with several new tokens (prefill, chunked prefill) run in groups of similar
 * length, each right-padded to its longest (prefillGroups bounds the padding). The block-table width
 * of a run is the most blocks any of its rows needs for its PAST tokens (at least 1), so attention
 * reads only the cache the batch uses.
 *
 * `session.run` is synchronous native work that blocks the calling thread for the whole step: call
 * the runner from a worker thread, not from the service's main thread.
 */
import os from "node:os";
import * as ort from "onnxruntime-node";
import type { Phi3Config } from "../model/phi3-config.ts";
import { readModelFiles, ModelFilesError } from "../model/model-files.ts";
import { io, type ModelDtype } from "../model/graph/phi3-decoder-graph.ts";
import { checkBatchRow, type BatchRow, type RunnerOutput, type StepRunner, type StepStats } from "./step-runner.ts";
import { checkSessionIo } from "./session-io.ts";

export interface RunnerOptions {
  modelDir: string;
  /** Execution provider; default from env ORT_EP, else "cpu". */
  ep?: "cpu" | "cuda";
  /** Threads for one operator; default: the machine's cores. */
  intraOpThreads?: number;
  numBlocks: number;
  blockSize: number;
  /** Benchmarks only: onnxruntime writes a per-operator profile (JSON, path prefix) when the runner is released. */
  profileFilePrefix?: string;
}

/** A prefill run may compute at most this many padded tokens per real one (else it is split). */
const MAX_PREFILL_PADDING = 1.25;

/**
 * Prefill rows grouped into runs of similar length: every row of a run is right-padded to its longest,
 * so a 400-token prompt and a 20-token one are cheaper apart than together. Longest first, greedily.
 */
export function prefillGroups(rows: ReadonlyArray<BatchRow>, prefill: number[]): number[][] {
  const order = [...prefill].sort((a, b) => rows[b].tokens.length - rows[a].tokens.length || a - b);
  const groups: number[][] = [];
  let group: number[] = [];
  let longest = 0;
  let real = 0;
  for (const r of order) {
    const n = rows[r].tokens.length;
    if (group.length > 0 && longest * (group.length + 1) > MAX_PREFILL_PADDING * (real + n)) {
      groups.push(group);
      group = [];
    }
    if (group.length === 0) {
      longest = n;
      real = 0;
    }
    group.push(r);
    real += n;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

export class ModelRunner implements StepRunner {
  readonly lastStepStats: StepStats = { totalMs: 0, sessionRunMs: 0, outputBytes: 0, runs: 0 };
  readonly kvBytesPerBlock: number;
  private readonly keyCache: Float32Array[] = [];
  private readonly valueCache: Float32Array[] = [];
  private readonly cacheFeeds: Record<string, ort.Tensor> = {};
  /** Floats of one block of one kv head: blockSize * headDim. */
  private readonly blockFloats: number;
  private readonly headStride: number;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly config: Phi3Config,
    readonly dtype: ModelDtype,
    readonly numBlocks: number,
    readonly blockSize: number,
  ) {
    const { numLayers, numKvHeads, headDim } = config;
    this.blockFloats = blockSize * headDim;
    this.headStride = numBlocks * this.blockFloats;
    const dims = [numKvHeads, numBlocks, blockSize, headDim];
    for (let l = 0; l < numLayers; l++) {
      const k = new Float32Array(numKvHeads * this.headStride);
      const v = new Float32Array(numKvHeads * this.headStride);
      this.keyCache.push(k);
      this.valueCache.push(v);
      this.cacheFeeds[io.pastKey(l)] = new ort.Tensor("float32", k, dims);
      this.cacheFeeds[io.pastValue(l)] = new ort.Tensor("float32", v, dims);
    }
    this.kvBytesPerBlock = 2 * numLayers * numKvHeads * this.blockFloats * 4;
  }

  static async load(options: RunnerOptions): Promise<ModelRunner> {
    const { numBlocks, blockSize } = options;
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`numBlocks must be a positive integer, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new Error(`blockSize must be a positive integer, got ${blockSize}`);
    const files = await readModelFiles(options.modelDir);
    if (files.layout !== "host") {
      throw new ModelFilesError(`${files.dir} holds the ${files.layout} layout (fp16, KV cache on a WebGPU device): serve it with ORT_EP=webgpu, or convert with --layout host for the ${options.ep ?? process.env.ORT_EP ?? "cpu"} provider`);
    }
    const ep = options.ep ?? parseEp(process.env.ORT_EP);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [ep],
      graphOptimizationLevel: "all",
      intraOpNumThreads: options.intraOpThreads ?? os.availableParallelism(),
      interOpNumThreads: 1,
      executionMode: "sequential",
      ...(options.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: options.profileFilePrefix } : {}),
    };
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(files.onnxPath, sessionOptions);
    } catch (err) {
      const message = (err as Error).message;
      if (ep === "cuda" && /cuda|shared library/i.test(message)) {
        throw new Error(
          `ORT_EP=cuda: the CUDA execution provider is not available in this onnxruntime-node install (${message}); ` +
            "on a GPU host install it with: npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12",
        );
      }
      throw new ModelFilesError(`${files.onnxPath}: onnxruntime could not load the model (${ep}): ${message}`);
    }
    try {
      checkGraphMatchesConfig(session, files.config, files.onnxPath);
    } catch (err) {
      await session.release();
      throw err;
    }
    return new ModelRunner(session, files.config, files.dtype, numBlocks, blockSize);
  }

  /** The step loop's forward pass: every row's full logits (ranking is left to the sampler). */
  async run(rows: BatchRow[]): Promise<RunnerOutput> {
    return { logits: await this.forward(rows) };
  }

  /** Logits [rows × vocab] of the rows' last new tokens, row-major. */
  async forward(rows: BatchRow[]): Promise<Float32Array> {
    const started = performance.now();
    const stats = this.lastStepStats;
    stats.sessionRunMs = 0;
    stats.outputBytes = 0;
    stats.runs = 0;
    const decode: number[] = [];
    const prefill: number[] = [];
    for (let r = 0; r < rows.length; r++) {
      checkBatchRow(rows[r], r, this);
      (rows[r].tokens.length === 1 ? decode : prefill).push(r);
    }
    const groups = decode.length > 0 ? [decode] : [];
    groups.push(...prefillGroups(rows, prefill));
    let logits: Float32Array;
    if (groups.length === 1 && groups[0].every((r, i) => r === i)) {
      // One run in the caller's row order: its logits output is the answer, no second copy.
      logits = await this.runGroup(rows, groups[0]);
    } else {
      const vocab = this.config.vocabSize;
      logits = new Float32Array(rows.length * vocab);
      for (const group of groups) {
        const part = await this.runGroup(rows, group);
        for (let b = 0; b < group.length; b++) logits.set(part.subarray(b * vocab, (b + 1) * vocab), group[b] * vocab);
      }
    }
    stats.totalMs = performance.now() - started;
    return logits;
  }

  async release(): Promise<void> {
    await this.session.release();
  }

  /** One session.run over rows[idx[0..]]: builds the small inputs, runs, stores the new K/V; returns logits [idx.length, vocab]. */
  private async runGroup(rows: BatchRow[], idx: number[]): Promise<Float32Array> {
    const B = idx.length;
    const bs = this.blockSize;
    let S = 1;
    let M = 1;
    for (const r of idx) {
      S = Math.max(S, rows[r].tokens.length);
      M = Math.max(M, Math.ceil(rows[r].pastLen / bs));
    }
    const inputIds = new BigInt64Array(B * S).fill(BigInt(this.config.padTokenId));
    const pastLens = new BigInt64Array(B);
    const newLens = new BigInt64Array(B);
    const logitsIndex = new BigInt64Array(B);
    const blockTables = new BigInt64Array(B * M);
    for (let b = 0; b < B; b++) {
      const row = rows[idx[b]];
      const n = row.tokens.length;
      for (let s = 0; s < n; s++) inputIds[b * S + s] = BigInt(row.tokens[s]);
      pastLens[b] = BigInt(row.pastLen);
      newLens[b] = BigInt(n);
      logitsIndex[b] = BigInt(n - 1);
      const own = Math.min(M, row.blockTable.length);
      for (let m = 0; m < M; m++) blockTables[b * M + m] = BigInt(row.blockTable[m < own ? m : 0]); // padding entries are masked
    }
    const feeds: Record<string, ort.Tensor> = {
      ...this.cacheFeeds,
      [io.inputIds]: new ort.Tensor("int64", inputIds, [B, S]),
      [io.pastLens]: new ort.Tensor("int64", pastLens, [B]),
      [io.newLens]: new ort.Tensor("int64", newLens, [B]),
      [io.logitsIndex]: new ort.Tensor("int64", logitsIndex, [B]),
      [io.blockTables]: new ort.Tensor("int64", blockTables, [B, M]),
    };
    const t0 = performance.now();
    const out = await this.session.run(feeds);
    this.lastStepStats.sessionRunMs += performance.now() - t0;
    this.lastStepStats.runs++;

    const logits = out[io.logits].data as Float32Array;
    let bytes = logits.byteLength;
    for (let l = 0; l < this.config.numLayers; l++) {
      const k = out[io.newKey(l)].data as Float32Array;
      const v = out[io.newValue(l)].data as Float32Array;
      bytes += k.byteLength + v.byteLength;
      this.storeNewRows(this.keyCache[l], k, rows, idx, S);
      this.storeNewRows(this.valueCache[l], v, rows, idx, S);
    }
    this.lastStepStats.outputBytes += bytes;
    return logits;
  }

  /** Writes new rows [KVH, B, S, hd] into the paged cache [KVH, NB, bs, hd] at each row's positions. */
  private storeNewRows(cache: Float32Array, fresh: Float32Array, rows: BatchRow[], idx: number[], S: number): void {
    const { numKvHeads, headDim: hd } = this.config;
    const B = idx.length;
    const bs = this.blockSize;
    for (let h = 0; h < numKvHeads; h++) {
      for (let b = 0; b < B; b++) {
        const row = rows[idx[b]];
        const n = row.tokens.length;
        let src = ((h * B + b) * S) * hd;
        for (let s = 0; s < n; s++) {
          const pos = row.pastLen + s;
          let dst = h * this.headStride + (row.blockTable[(pos / bs) | 0] * bs + (pos % bs)) * hd;
          for (let e = 0; e < hd; e++) cache[dst++] = fresh[src++];
        }
      }
    }
  }
}

function parseEp(v: string | undefined): "cpu" | "cuda" {
  if (v === undefined || v === "" || v === "cpu") return "cpu";
  if (v === "cuda") return "cuda";
  throw new Error(`ORT_EP must be "cpu" or "cuda", got ${JSON.stringify(v)}`);
}

/** The graph's inputs/outputs must be the layout's, sized as model-config.json says. */
function checkGraphMatchesConfig(session: ort.InferenceSession, c: Phi3Config, onnxPath: string): void {
  const expectIn: string[] = [io.inputIds, io.pastLens, io.newLens, io.logitsIndex, io.blockTables];
  const expectOut: string[] = [io.logits];
  for (let l = 0; l < c.numLayers; l++) {
    expectIn.push(io.pastKey(l), io.pastValue(l));
    expectOut.push(io.newKey(l), io.newValue(l));
  }
  checkSessionIo(session, expectIn, expectOut, `${onnxPath} does not match model-config.json (numLayers ${c.numLayers})`);
  const meta = (list: readonly ort.InferenceSession.ValueMetadata[] | undefined, name: string) => list?.find((m) => m.name === name);
  const dimMismatch = (name: string, m: ort.InferenceSession.ValueMetadata | undefined, axis: number, want: number, field: string) => {
    if (!m || !m.isTensor) return;
    const got = m.shape[axis];
    if (typeof got === "number" && got !== want) {
      throw new ModelFilesError(`${onnxPath} does not match model-config.json: ${name} has ${got} at axis ${axis}, ${field} is ${want}`);
    }
  };
  const pk = meta(session.inputMetadata, io.pastKey(0));
  dimMismatch(io.pastKey(0), pk, 0, c.numKvHeads, "numKvHeads");
  dimMismatch(io.pastKey(0), pk, 3, c.headDim, "headDim");
  dimMismatch(io.logits, meta(session.outputMetadata, io.logits), 1, c.vocabSize, "vocabSize");
}
