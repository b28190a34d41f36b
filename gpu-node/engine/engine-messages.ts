/** The messages between the host thread (engine.ts) and the engine thread (engine-thread.ts). */
import type { ExecutionProvider } from "../runner/execution-provider.ts";
import type { StreamEvent } from "../../shared/protocol.ts";
import type { Phi3Config } from "../model/phi3-config.ts";
import type { EngineStats, EngineSubmission } from "./llm-engine.ts";

export interface EngineThreadOptions {
  modelDir: string;
  ep?: ExecutionProvider;
  intraOpThreads?: number;
  numBlocks: number;
  blockSize: number;
  maxBatch: number;
  maxBatchTokens: number;
  /** Named in `start` events, so a stream shows which node served it. */
  nodeName: string;
}

export type HostMessage =
  | { type: "submit"; submission: EngineSubmission }
  | { type: "abort"; id: string }
  | { type: "stats"; requestId: number }
  | { type: "close" };

export type ThreadMessage =
  | { type: "ready"; config: Phi3Config; numBlocks: number; blockSize: number; kvBytesPerBlock: number }
  | { type: "fatal"; message: string }
  | { type: "events"; events: Array<[string, StreamEvent]> }
  | { type: "stats"; requestId: number; stats: EngineStats };
