/**
 * One GPU node: the engine, the queue consumer, the stream publisher, the cancel listener and the
 * status server, wired together; and its shutdown: stop taking jobs, drain, hand back, close.
 */
import { Worker } from "bullmq";
import { redisKeys } from "../../shared/redis-keys.ts";
import { CANCEL_TTL_SECONDS } from "../../shared/redis-keys.ts";
import { Engine } from "../engine/engine.ts";
import { AdmissionGate } from "./admission-gate.ts";
import { CancelListener } from "./cancel-listener.ts";
import type { NodeConfig } from "./config.ts";
import { JobConsumer } from "./job-consumer.ts";
import type { Logger } from "./logger.ts";
import { NodeMetrics } from "./metrics.ts";
import { startStatusServer, type StatusServer } from "./status-server.ts";
import { StreamPublisher } from "./stream-publisher.ts";
import { NodeHeartbeat } from "./node-heartbeat.ts";
import { openRedisConnection } from "./redis-connection.ts";
import { StepWatchdog } from "./step-watchdog.ts";

/** How long a blocked fetch waits for a job before it loops (bounds how long a close waits for it). */
const FETCH_BLOCK_SECONDS = 2;
const READY_PING_TIMEOUT_MS = 1000;

export interface GpuNode {
  readonly metricsPort: number;
  readonly engine: Engine;
  /** Drains and closes; resolves to the process exit code (0 after a clean drain). */
  shutdown(reason: string): Promise<number>;
  /** Resolves when the node decided to stop on its own (engine failure), with the exit code. */
  readonly stopped: Promise<number>;
}

export async function startGpuNode(config: NodeConfig, modelDir: string, log: Logger): Promise<GpuNode> {
  const keys = redisKeys(config.redisPrefix);
  const metrics = new NodeMetrics(config.nodeName);
  let engine: Engine | null = null;
  let consumer: JobConsumer | null = null;
  let watchdog: StepWatchdog | null = null;
  const commands = openRedisConnection(config.redis, { lazyConnect: true, connectionName: `${config.nodeName}:commands` });
  commands.on("error", (err: Error) => log.warn({ err: err.message }, "redis connection error"));

  // The status server comes up first: /health answers while the model loads.
  const status: StatusServer = await startStatusServer(config.metricsPort, {
    notReadyReason: async () => {
      if (!engine) return "model loading";
      if (watchdog?.stallReason) return watchdog.stallReason;
      if (!consumer?.isTakingJobs) return "not taking jobs";
      const pong = await Promise.race([
        commands.ping().catch(() => null),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), READY_PING_TIMEOUT_MS)),
      ]);
      return pong === "PONG" ? null : "redis unreachable";
    },
    metrics: async () => ({
      contentType: metrics.contentType,
      body: await metrics.render(engine ? await engine.stats() : null, consumer?.jobsHeld ?? 0),
    }),
  }, config.metricsHost);
  log.info({ host: config.metricsHost, port: status.port }, "listening");

  await commands.connect();
  const started = performance.now();
  engine = await Engine.start({
    modelDir,
    kvCacheTokens: config.kvCacheTokens,
    blockSize: config.kvBlockSize,
    maxBatch: config.maxBatch,
    maxBatchTokens: config.maxBatchTokens,
    ep: config.ep,
    intraOpThreads: config.intraOpThreads,
    nodeName: config.nodeName,
  });
  log.info({ modelDir, ep: config.ep, kvBlocks: engine.numBlocks, blockSize: engine.blockSize, ms: Math.round(performance.now() - started) }, "engine loaded");

  let resolveStopped!: (code: number) => void;
  const stopped = new Promise<number>((resolve) => (resolveStopped = resolve));
  let shuttingDown: Promise<number> | null = null;

  const liveTtlSeconds = Math.max(config.streamTtlSeconds, CANCEL_TTL_SECONDS);
  const publisher = new StreamPublisher(commands, config.streamTtlSeconds, liveTtlSeconds, (id, reason) => consumer?.lose(id, reason),
    (wallMs, hostMs) => {
      metrics.streamPublish.observe(wallMs / 1000);
      metrics.streamPublishHost.inc(hostMs / 1000);
    },
  );
  const gate = new AdmissionGate(engine, config.maxBatch);
  const cancels = await CancelListener.start(commands, keys, (id) => consumer?.cancel(id), log);
  // BullMQ's own connection: blocking fetches need maxRetriesPerRequest null.
  const queueConnection = openRedisConnection(config.redis, { maxRetriesPerRequest: null, connectionName: `${config.nodeName}:queue` });
  queueConnection.on("error", (err: Error) => log.warn({ err: err.message }, "redis queue connection error"));
  const worker = new Worker(keys.queue, null, {
    connection: queueConnection,
    prefix: keys.queuePrefix,
    autorun: false,
    name: config.nodeName,
    lockDuration: config.lockDurationMs,
    stalledInterval: config.stalledIntervalMs,
    // BullMQ's own limit is only the backstop: the start count (job-consumer.ts) ends a crashing job
    // first, with an error event in its stream, at the pickup after its last allowed start.
    maxStalledCount: config.maxJobStarts,
    drainDelay: FETCH_BLOCK_SECONDS,
  });
  worker.on("error", (err: Error) => log.warn({ err: err.message }, "queue worker error"));
  await worker.waitUntilReady();

  const heartbeat = new NodeHeartbeat(commands, keys.nodes, config.nodeName, log);

  const shutdown = (reason: string, exitCode = 0, drainTimeoutMs = config.drainTimeoutMs): Promise<number> => {
    shuttingDown ??= (async () => {
      log.info({ reason, jobsHeld: consumer!.jobsHeld, drainTimeoutMs }, "draining");
      watchdog?.stop();
      // Stop taking jobs before anything awaits: a job fetched during the heartbeat's withdrawal would
      // otherwise be taken by a node that is already draining.
      const drained = consumer!.drain(drainTimeoutMs);
      await heartbeat.stop();
      const { finished, handedBack } = await drained;
      await consumer!.stop();
      await worker.close(true).catch((err: Error) => log.warn({ err: err.message }, "closing the queue worker failed"));
      // The loop ends once its blocked fetch returns; a dead engine's stats call would never answer, so bound the wait.
      await Promise.race([consumer!.fetchLoopDone(), new Promise((resolve) => setTimeout(resolve, FETCH_BLOCK_SECONDS * 1000 + 500).unref())]);
      await cancels.close();
      await engine!.close().catch(() => undefined);
      await Promise.allSettled([commands.quit(), queueConnection.quit()]);
      await status.close();
      log.info({ finished, handedBack, exitCode }, "stopped");
      resolveStopped(exitCode);
      return exitCode;
    })();
    return shuttingDown;
  };

  consumer = new JobConsumer({
    engine, worker, redis: commands, publisher, cancels, gate, metrics, log, keys,
    servedModelId: config.servedModelId,
    lockDurationMs: config.lockDurationMs,
    liveTtlSeconds,
    maxJobStarts: config.maxJobStarts,
    jobExpirySeconds: config.jobExpirySeconds,
    onEngineFailure: (err) => void shutdown(`engine failed: ${err.message}`, 1, 0),
  });
  consumer.start();
  await heartbeat.start();
  watchdog = new StepWatchdog(engine, config.stepWatchdogMs, () => consumer!.jobsHeld > 0, () => {
    consumer!.abandon();
    void heartbeat.stop();
  }, log);
  watchdog.start();
  log.info({ prefix: keys.prefix, maxBatch: config.maxBatch, kvCacheTokens: config.kvCacheTokens }, "ready");

  return {
    metricsPort: status.port,
    engine,
    shutdown: (reason) => shutdown(reason),
    stopped,
  };
}
