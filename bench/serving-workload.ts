/**
 * A mixed serving workload for bench:engine, and the arithmetic that turns measured generation into serving figures.
 *
 * Real traffic is not 16 equal requests at once: prompts and outputs differ in length (mostly short, some long)
 * and requests arrive over time. The workload is seeded, so every run and both engines see the same requests:
 * lengths are drawn log-skewed, `min · (max/min)^(u^skew)` with u uniform (skew 2: the median prompt of 16–512 is
 * ≈ 38 tokens, one in ten is over 256), and the same lengths arrive either all at t = 0 (a burst) or as a Poisson
 * process (exponential gaps at `arrivalsPerSec`, the first at t = 0).
 *
 * Static batching (what transformers.js offers) is replayed on a timeline from measured `generate()` calls: FCFS
 * groups of `size` in arrival order; a group starts when it is full (its last member has arrived) or, for the last
 * group, when no more requests will come, and not before the previous group has finished; it runs until its
 * longest member is done. A generate's duration does not depend on when it starts, so each group is generated
 * once, back to back, and the same measurement places it on the burst and the Poisson timelines.
 */
import { seededUniform } from "../shared/seeded-uniform.ts";

export interface ServingRequest {
  index: number;
  promptTokens: number;
  maxTokens: number;
  arrivalMs: number;
}

export interface LengthRange {
  min: number;
  max: number;
}

export interface WorkloadShape {
  count: number;
  seed: number;
  prompt: LengthRange;
  output: LengthRange;
  /** u^skew: 1 = log-uniform, larger = more short requests. */
  skew: number;
  arrivalsPerSec: number;
}

export interface ServingWorkload {
  /** Every request at t = 0. */
  burst: ServingRequest[];
  /** The same requests arriving as a Poisson process. */
  poisson: ServingRequest[];
}

export function servingWorkload(shape: WorkloadShape): ServingWorkload {
  const uniform = seededUniform(shape.seed);
  const skewed = (r: LengthRange) => Math.round(r.min * (r.max / r.min) ** (uniform() ** shape.skew));
  const lengths = Array.from({ length: shape.count }, () => ({ promptTokens: skewed(shape.prompt), maxTokens: skewed(shape.output) }));
  let t = 0;
  const arrivals = lengths.map((_, i) => {
    if (i > 0) t += (-Math.log(1 - uniform()) / shape.arrivalsPerSec) * 1000;
    return t;
  });
  return {
    burst: lengths.map((l, index) => ({ index, ...l, arrivalMs: 0 })),
    poisson: lengths.map((l, index) => ({ index, ...l, arrivalMs: arrivals[index] })),
  };
}

// ---------------------------------------------------------------- serving figures

/** What one request saw, in ms on the workload's clock (its first arrival is 0). */
export interface RequestTiming {
  index: number;
  arrivalMs: number;
  firstTokenMs: number;
  finishMs: number;
  tokens: number;
}

export interface ServingFigures {
  requests: number;
  outputTokens: number;
  /** Last finish − first arrival. */
  makespanMs: number;
  /** Aggregate output tokens/s: all generated tokens ÷ makespan. */
  tokensPerSec: number;
  latencyP50Ms: number;
  latencyP90Ms: number;
  latencyMaxMs: number;
  ttftP50Ms: number;
  ttftP90Ms: number;
  /** Time-averaged number of requests between arrival and finish. */
  meanInFlight: number;
  /** Share of the makespan during which at most 2 requests were in flight (the tail a long request leaves). */
  tailShareAtMost2: number;
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

export function servingFigures(timings: RequestTiming[]): ServingFigures {
  const first = Math.min(...timings.map((t) => t.arrivalMs));
  const last = Math.max(...timings.map((t) => t.finishMs));
  const makespan = last - first;
  const outputTokens = timings.reduce((n, t) => n + t.tokens, 0);
  const latencies = timings.map((t) => t.finishMs - t.arrivalMs);
  const ttfts = timings.map((t) => t.firstTokenMs - t.arrivalMs);
  // Sweep arrivals (+1) and finishes (−1) in time order to integrate the in-flight count.
  const edges = timings.flatMap((t) => [[t.arrivalMs, 1], [t.finishMs, -1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let inFlight = 0;
  let prev = first;
  let lowMs = 0;
  for (const [at, delta] of edges) {
    if (inFlight <= 2) lowMs += at - prev;
    prev = at;
    inFlight += delta;
  }
  return {
    requests: timings.length,
    outputTokens,
    makespanMs: makespan,
    tokensPerSec: (outputTokens * 1000) / makespan,
    latencyP50Ms: percentile(latencies, 50),
    latencyP90Ms: percentile(latencies, 90),
    latencyMaxMs: Math.max(...latencies),
    ttftP50Ms: percentile(ttfts, 50),
    ttftP90Ms: percentile(ttfts, 90),
    meanInFlight: latencies.reduce((a, b) => a + b, 0) / makespan,
    tailShareAtMost2: lowMs / makespan,
  };
}

// ---------------------------------------------------------------- static batching, replayed

/** FCFS groups of `size` in arrival order (the last one may be smaller). */
export function fcfsGroups(requests: ServingRequest[], size: number): ServingRequest[][] {
  const ordered = [...requests].sort((a, b) => a.arrivalMs - b.arrivalMs || a.index - b.index);
  const groups: ServingRequest[][] = [];
  for (let i = 0; i < ordered.length; i += size) groups.push(ordered.slice(i, i + size));
  return groups;
}

/** One measured generate over a group: its duration and, per member (by request index), when its own tokens were done. */
export interface MeasuredBatch {
  members: number[];
  durationMs: number;
  /** ms from the generate's start to the member's first and to its `maxTokens`-th token. */
  firstTokenOffsetMs: number[];
  finishOffsetMs: number[];
  maxTokens: number[];
}

/**
 * Places measured groups, in order, on the timeline of `requests`' arrivals: a group starts at
 * max(previous group's end, its last member's arrival) and holds the engine for its whole duration.
 */
export function staticBatchTimeline(requests: ServingRequest[], batches: MeasuredBatch[]): RequestTiming[] {
  const byIndex = new Map(requests.map((r) => [r.index, r]));
  const timings: RequestTiming[] = [];
  let free = 0;
  for (const b of batches) {
    const formed = Math.max(...b.members.map((i) => byIndex.get(i)!.arrivalMs));
    const start = Math.max(free, formed);
    b.members.forEach((i, k) => {
      timings.push({
        index: i,
        arrivalMs: byIndex.get(i)!.arrivalMs,
        firstTokenMs: start + b.firstTokenOffsetMs[k],
        finishMs: start + b.finishOffsetMs[k],
        tokens: b.maxTokens[k],
      });
    });
    free = start + b.durationMs;
  }
  return timings.sort((a, b) => a.index - b.index);
}
