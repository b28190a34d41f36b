/**
 * The node's Prometheus metrics (prom-client, its own registry). Request-level figures are recorded
 * as events pass through the consumer; engine-level gauges (sequences, KV blocks, prefix cache,
 * preemptions) are read from one `engine.stats()` snapshot per scrape.
 *
 * Clocks: queue wait runs from the Worker's `enqueuedAt` (another machine's clock) to pickup; time to
 * first token, inter-token latency and end-to-end latency run on this node's monotonic clock from pickup.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EngineStats } from "../engine/llm-engine.ts";

export type RequestOutcome =
  /** Ended with `done`. */
  | "completed"
  /** Ended with `done` + cancelled (the client went away). */
  | "cancelled"
  /** Ended with an `error` event: bad job, unknown model, prompt over the context. */
  | "rejected"
  /** Handed back to the queue by a draining node. */
  | "handed_back"
  /** Lost: this node's lock or stream write was refused; another node owns the job. */
  | "lost";

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const TOKEN_GAP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5];

export class NodeMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"outcome">;
  readonly resumed: Counter;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly timeToFirstToken: Histogram;
  readonly interTokenLatency: Histogram;
  readonly e2eLatency: Histogram;
  readonly queueWait: Histogram;
  readonly streamPublish: Histogram;
  readonly streamPublishHost: Counter;
  private readonly jobsInFlight: Gauge;
  private readonly running: Gauge;
  private readonly waiting: Gauge;
  private readonly kvBlocksUsed: Gauge;
  private readonly kvBlocksTotal: Gauge;
  private readonly prefixCacheHitRate: Gauge;
  private readonly preemptions: Counter;
  private readonly engineSteps: Counter;
  private readonly engineStepSeconds: Counter;
  private readonly engineForwardSeconds: Counter;
  private seen = { preemptions: 0, steps: 0, stepMs: 0, forwardMs: 0 };

  constructor(nodeName: string) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: nodeName });
    collectDefaultMetrics({ register: this.registry, prefix: "gpu_node_" });
    this.requests = new Counter({ name: "phi4_requests_total", help: "Requests this node finished, by outcome.", labelNames: ["outcome"], registers });
    for (const outcome of ["completed", "cancelled", "rejected", "handed_back", "lost"]) this.requests.inc({ outcome }, 0);
    this.resumed = new Counter({ name: "phi4_requests_resumed_total", help: "Requests this node continued from a stream another node had started.", registers });
    this.promptTokens = new Counter({ name: "phi4_prompt_tokens_total", help: "Prompt tokens of requests this node started.", registers });
    this.generationTokens = new Counter({ name: "phi4_generation_tokens_total", help: "Tokens this node generated and published.", registers });
    this.timeToFirstToken = new Histogram({ name: "phi4_time_to_first_token_seconds", help: "Pickup to the first published token.", buckets: LATENCY_BUCKETS, registers });
    this.interTokenLatency = new Histogram({ name: "phi4_inter_token_latency_seconds", help: "Gap between consecutive tokens of one choice.", buckets: TOKEN_GAP_BUCKETS, registers });
    this.e2eLatency = new Histogram({ name: "phi4_e2e_request_latency_seconds", help: "Pickup to the last event of the request.", buckets: LATENCY_BUCKETS, registers });
    this.queueWait = new Histogram({ name: "phi4_queue_wait_seconds", help: "Enqueue (Worker clock) to pickup by this node.", buckets: LATENCY_BUCKETS, registers });
    this.streamPublish = new Histogram({ name: "phi4_stream_publish_seconds", help: "One engine step's events: Redis call sent to reply (wall).", buckets: TOKEN_GAP_BUCKETS, registers });
    this.streamPublishHost = new Counter({ name: "phi4_stream_publish_host_seconds_total", help: "Host-thread time spent encoding, sending and settling stream writes.", registers });
    this.jobsInFlight = new Gauge({ name: "phi4_jobs_in_flight", help: "Jobs this node holds.", registers });
    this.running = new Gauge({ name: "phi4_running_sequences", help: "Sequences in the running batch.", registers });
    this.waiting = new Gauge({ name: "phi4_waiting_sequences", help: "Sequences waiting inside the engine (admission or preempted).", registers });
    this.kvBlocksUsed = new Gauge({ name: "phi4_kv_blocks_used", help: "KV cache blocks in use.", registers });
    this.kvBlocksTotal = new Gauge({ name: "phi4_kv_blocks_total", help: "KV cache blocks in all.", registers });
    this.prefixCacheHitRate = new Gauge({ name: "phi4_prefix_cache_hit_rate", help: "Share of prompt blocks found in the prefix cache.", registers });
    this.preemptions = new Counter({ name: "phi4_preemptions_total", help: "Sequences preempted for KV room (recomputed later).", registers });
    this.engineSteps = new Counter({ name: "phi4_engine_steps_total", help: "Engine steps (one forward pass over the batch each).", registers });
    this.engineStepSeconds = new Counter({ name: "phi4_engine_step_seconds_total", help: "Time in engine steps (schedule, forward, sample).", registers });
    this.engineForwardSeconds = new Counter({ name: "phi4_engine_forward_seconds_total", help: "Time in forward passes.", registers });
  }

  /** Prometheus text, with engine gauges from a fresh snapshot (null: engine not loaded yet). */
  async render(engineStats: EngineStats | null, jobsInFlight: number): Promise<string> {
    this.jobsInFlight.set(jobsInFlight);
    if (engineStats) {
      this.running.set(engineStats.running);
      this.waiting.set(engineStats.waiting);
      this.kvBlocksUsed.set(engineStats.kvBlocksUsed);
      this.kvBlocksTotal.set(engineStats.kvBlocksTotal);
      this.prefixCacheHitRate.set(engineStats.prefixCacheHitRate);
      // The engine keeps running totals; counters advance by what is new since the last scrape.
      const seen = this.seen;
      this.preemptions.inc(Math.max(0, engineStats.preemptions - seen.preemptions));
      this.engineSteps.inc(Math.max(0, engineStats.steps - seen.steps));
      this.engineStepSeconds.inc(Math.max(0, engineStats.stepMs - seen.stepMs) / 1000);
      this.engineForwardSeconds.inc(Math.max(0, engineStats.forwardMs - seen.forwardMs) / 1000);
      this.seen = { preemptions: engineStats.preemptions, steps: engineStats.steps, stepMs: engineStats.stepMs, forwardMs: engineStats.forwardMs };
    }
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
