/**
 * `npm run gpu-node`: one GPU node, configured from the environment (config.ts). A bad setting is one
 * line on stderr and exit status 2. SIGTERM/SIGINT drain the node (stop taking jobs, finish or hand
 * back what it holds within DRAIN_TIMEOUT_MS) and exit 0; a second signal exits at once (1), leaving
 * held jobs to BullMQ's stalled-job check.
 */
import { ConfigError, parseNodeConfig, type NodeConfig } from "./config.ts";
import { startGpuNode, type GpuNode } from "./gpu-node.ts";
import { createLogger } from "./logger.ts";
import { resolveModelDir } from "./model-dir.ts";

function die(message: string, code: number): never {
  process.stderr.write(`gpu-node: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let config: NodeConfig;
  let modelDir: string;
  let built = false;
  try {
    config = parseNodeConfig(process.env);
    ({ dir: modelDir, built } = await resolveModelDir(config.modelDir, config.ep));
  } catch (err) {
    if (err instanceof ConfigError) die(err.message, 2);
    throw err;
  }
  const log = createLogger(config.logLevel, config.nodeName);
  if (built) log.info({ modelDir }, "built the tiny model (first start)");

  // Handlers go in before the node starts: it announces itself and takes jobs before startGpuNode returns,
  // and a signal in that window must drain it, not kill it. A signal during startup drains once it is up.
  let node: GpuNode | undefined;
  let pending: NodeJS.Signals | undefined;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      log.warn({ signal }, "second signal: exiting without drain");
      process.exit(1);
    }
    if (node) void node.shutdown(signal).then((code) => process.exit(code));
    else pending = signal;
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  node = await startGpuNode(config, modelDir, log);
  void node.stopped.then((code) => process.exit(code));
  if (pending) void node.shutdown(pending).then((code) => process.exit(code));
}

main().catch((err: Error) => die(err.message, 1));
