/**
 * The engine's worker thread. onnxruntime-node's run() blocks the thread it is called on for the whole
 * step, so the step loop lives here and the host thread (Redis, HTTP, heartbeats) stays responsive.
 * Messages in: submit, abort, stats, close. Messages out: ready | fatal, events (one batch per step), stats.
 */
import { parentPort, workerData } from "node:worker_threads";
import { setImmediate as nextTurn } from "node:timers/promises";
import { loadRunner } from "../runner/load-runner.ts";
import { phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";
import { LlmEngine } from "./llm-engine.ts";
import type { StreamEvent } from "../../shared/protocol.ts";
import type { EngineThreadOptions, HostMessage, ThreadMessage } from "./engine-messages.ts";

const port = parentPort!;
const options = workerData as EngineThreadOptions;
const post = (m: ThreadMessage) => port.postMessage(m);

let pending: Array<[string, StreamEvent]> = [];
let wake: (() => void) | null = null;
let closing = false;

function flush(): void {
  if (pending.length === 0) return;
  post({ type: "events", events: pending });
  pending = [];
}

async function main(): Promise<void> {
  const runner = await loadRunner({
    modelDir: options.modelDir,
    ep: options.ep ?? "cpu",
    intraOpThreads: options.intraOpThreads,
    numBlocks: options.numBlocks,
    blockSize: options.blockSize,
  });
  const engine = new LlmEngine(runner, phi4Tokenizer(), options, (id, event) => pending.push([id, event]));

  // A step awaits onnxruntime between its runs, and messages are delivered in those gaps; a submit or
  // abort applied then would change the batch under the step (an abort frees block tables the step's
  // next run still reads). They wait for the step to end.
  let stepping = false;
  const deferred: HostMessage[] = [];
  const apply = (m: HostMessage) => {
    switch (m.type) {
      case "submit": {
        const failed = (e: unknown) => pending.push([m.submission.id, {
          type: "error", status: 500, errorType: "server_error", code: "engine_error", message: (e as Error).message, param: null,
        }]);
        try {
          // A request with a grammar is admitted once it is compiled (XGrammar runs on this thread).
          const admitted = engine.submit(m.submission, options.nodeName);
          if (admitted) void admitted.catch(failed).finally(() => { flush(); wake?.(); });
        } catch (e) {
          failed(e);
        }
        flush();
        break;
      }
      case "abort":
        engine.abort(m.id);
        flush();
        break;
      case "stats":
        post({ type: "stats", requestId: m.requestId, stats: engine.stats() });
        break;
      case "close":
        closing = true;
        break;
    }
    wake?.();
  };
  port.on("message", (m: HostMessage) => {
    if (stepping && (m.type === "submit" || m.type === "abort")) deferred.push(m);
    else apply(m);
  });
  post({ type: "ready", config: runner.config, numBlocks: runner.numBlocks, blockSize: runner.blockSize, kvBytesPerBlock: runner.kvBytesPerBlock });

  while (!closing) {
    if (engine.hasWork) {
      stepping = true;
      try {
        await engine.step();
      } finally {
        stepping = false;
      }
      for (const m of deferred.splice(0)) apply(m);
      flush();
      await nextTurn(); // let submit/abort messages in between steps
    } else {
      await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
    }
  }
  await engine.release();
  await runner.release();
  port.close();
}

main().catch((e: Error) => post({ type: "fatal", message: e.message }));
