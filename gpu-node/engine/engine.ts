/**
 * The engine as its host sees it: `submit` → an async iterable of the request's stream events,
 * `abort`, `stats`. The model runs on a worker thread (engine-thread.ts); this side only routes messages.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { StreamEvent } from "../../shared/protocol.ts";
import type { Phi3Config } from "../model/phi3-config.ts";
import type { EngineThreadOptions, HostMessage, ThreadMessage } from "./engine-messages.ts";
import type { EngineStats, EngineSubmission } from "./llm-engine.ts";

export interface EngineOptions extends Partial<Omit<EngineThreadOptions, "modelDir" | "numBlocks">> {
  modelDir: string;
  /** KV cache capacity in tokens (rounded up to whole blocks). */
  kvCacheTokens: number;
}

/** Events of one request, buffered until its consumer pulls them. Ends after `done` or `error`. */
class EventChannel implements AsyncIterable<StreamEvent> {
  private readonly buffered: StreamEvent[] = [];
  private waiter: ((r: IteratorResult<StreamEvent>) => void) | null = null;
  private ended = false;

  push(event: StreamEvent): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: event, done: false });
    } else {
      this.buffered.push(event);
    }
  }

  end(): void {
    this.ended = true;
    if (this.waiter && this.buffered.length === 0) this.waiter({ value: undefined, done: true });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    for (;;) {
      if (this.buffered.length > 0) {
        yield this.buffered.shift()!;
        continue;
      }
      if (this.ended) return;
      const r = await new Promise<IteratorResult<StreamEvent>>((resolve) => (this.waiter = resolve));
      if (r.done) return;
      yield r.value;
    }
  }
}

/**
 * The thread's entry: register tsx's TypeScript loader in that thread, then load engine-thread.ts.
 * Works the same whether the host runs under tsx, vitest or plain node with tsx installed.
 */
function threadBootstrap(): string {
  const tsxPackage = createRequire(import.meta.url).resolve("tsx/package.json");
  const esmApi = (JSON.parse(readFileSync(tsxPackage, "utf8")) as { exports: Record<string, { import: { default: string } }> })
    .exports["./esm/api"].import.default;
  const tsxApi = pathToFileURL(path.join(path.dirname(tsxPackage), esmApi)).href;
  const entry = new URL("./engine-thread.ts", import.meta.url).href;
  return `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })` +
    `.catch((e) => require("node:worker_threads").parentPort.postMessage({ type: "fatal", message: String(e && e.message || e) }));`;
}

export class Engine {
  private readonly channels = new Map<string, EventChannel>();
  private readonly statsWaiters = new Map<number, (s: EngineStats) => void>();
  private nextStatsId = 0;
  private failure: Error | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly config: Phi3Config,
    readonly numBlocks: number,
    readonly blockSize: number,
    readonly kvBytesPerBlock: number,
  ) {
    worker.on("message", (m: ThreadMessage) => this.onMessage(m));
    worker.on("error", (e) => this.fail(e));
    worker.on("exit", (code) => code !== 0 && this.fail(new Error(`engine thread exited with code ${code}`)));
  }

  static async start(options: EngineOptions): Promise<Engine> {
    const blockSize = options.blockSize ?? 16;
    const threadOptions: EngineThreadOptions = {
      modelDir: options.modelDir,
      ep: options.ep ?? "cpu",
      intraOpThreads: options.intraOpThreads,
      numBlocks: Math.ceil(options.kvCacheTokens / blockSize),
      blockSize,
      maxBatch: options.maxBatch ?? 32,
      maxBatchTokens: options.maxBatchTokens ?? 512,
      nodeName: options.nodeName ?? "local",
    };
    const worker = new Worker(threadBootstrap(), { eval: true, workerData: threadOptions });
    const ready = await new Promise<Extract<ThreadMessage, { type: "ready" }>>((resolve, reject) => {
      const onMessage = (m: ThreadMessage) => {
        if (m.type === "ready") resolve(m);
        else if (m.type === "fatal") reject(new Error(`engine failed to start: ${m.message}`));
        else return;
        worker.off("message", onMessage);
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`engine thread exited with code ${code} while starting`)));
    });
    worker.removeAllListeners("error");
    worker.removeAllListeners("exit");
    return new Engine(worker, ready.config, ready.numBlocks, ready.blockSize, ready.kvBytesPerBlock);
  }

  submit(submission: EngineSubmission): AsyncIterable<StreamEvent> {
    if (this.failure) throw this.failure;
    if (this.channels.has(submission.id)) throw new Error(`request ${submission.id} is already submitted`);
    const channel = new EventChannel();
    this.channels.set(submission.id, channel);
    this.send({ type: "submit", submission });
    return channel;
  }

  abort(id: string): void {
    if (this.channels.has(id)) this.send({ type: "abort", id });
  }

  stats(): Promise<EngineStats> {
    const requestId = this.nextStatsId++;
    return new Promise((resolve) => {
      this.statsWaiters.set(requestId, resolve);
      this.send({ type: "stats", requestId });
    });
  }

  async close(): Promise<void> {
    this.send({ type: "close" });
    await new Promise((resolve) => this.worker.once("exit", resolve));
  }

  private send(m: HostMessage): void {
    this.worker.postMessage(m);
  }

  private onMessage(m: ThreadMessage): void {
    if (m.type === "events") {
      for (const [id, event] of m.events) {
        const channel = this.channels.get(id);
        if (!channel) continue;
        channel.push(event);
        if (event.type === "done" || event.type === "error") {
          channel.end();
          this.channels.delete(id);
        }
      }
    } else if (m.type === "stats") {
      this.statsWaiters.get(m.requestId)?.(m.stats);
      this.statsWaiters.delete(m.requestId);
    } else if (m.type === "fatal") {
      this.fail(new Error(m.message));
    }
  }

  /** The engine thread died: every open request ends with an error event, nothing hangs. */
  private fail(error: Error): void {
    this.failure = error;
    for (const [id, channel] of this.channels) {
      channel.push({ type: "error", status: 503, errorType: "server_error", code: "engine_failed", message: error.message, param: null });
      channel.end();
      this.channels.delete(id);
    }
  }
}
