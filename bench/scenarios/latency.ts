import { BenchChild } from "../lib/child.ts";
import type { BenchContext, Result } from "../lib/context.ts";
import type { ChildConfig } from "../lib/protocol.ts";
import { nowMs, percentile, sleep, summarize, until } from "../lib/stats.ts";
import { createSystem, type SystemName } from "../lib/systems.ts";

export interface LatencyFigures {
  p50: number[];
  p95: number[];
  p99: number[];
  max: number[];
  missed: number[];
}

export interface LatencyVariant {
  system: SystemName;
  label: string;
  child: Partial<ChildConfig>;
  /** Which configuration, when a scenario compares several of one system. */
  variant?: string;
}

/** One idle worker process of one variant, and the system's producer side, for latency series. */
export interface LatencyRig {
  variant: LatencyVariant;
  /** Submits `count` jobs one per interval; returns each job's start latency (ms). */
  series(count: number): Promise<number[]>;
  close(): Promise<void>;
}

/**
 * Wake latency: one idle worker process listening; the bench process submits one job every
 * `intervalMs` with the library's single enqueue and notes the time just before each call; the
 * worker notes when each handler starts. Both clocks are performance.timeOrigin + now(); the
 * child's offset is measured by IPC ping and subtracted.
 */
export async function openLatencyRig(
  ctx: BenchContext,
  variant: LatencyVariant,
): Promise<LatencyRig> {
  const { intervalMs } = ctx.settings.latency;
  const adapter = await createSystem(variant.system, ctx.url, "latency");
  let child: BenchChild;
  try {
    child = await BenchChild.spawn({
      system: variant.system,
      url: ctx.url,
      schema: adapter.schema,
      queue: adapter.queue,
      task: adapter.task,
      concurrency: 16,
      recordStarts: true,
      yieldInHandler: true,
      ...variant.child,
    } as ChildConfig);
    await child.request({ type: "prepare" }, "prepared");
    await child.request({ type: "start" }, "started");
  } catch (error) {
    await adapter.drop();
    throw error;
  }
  return {
    variant,
    async series(count) {
      // Idle before each series, so the first job finds a sleeping worker.
      await sleep(200);
      const { offsetMs } = await child.clockOffset();
      const before = child.handled;
      const sentAt = new Array<number>(count);
      const submissions: Promise<unknown>[] = [];
      const t0 = nowMs();
      for (let i = 0; i < count; i++) {
        const due = t0 + i * intervalMs;
        const wait = due - nowMs();
        if (wait > 1) await sleep(wait);
        sentAt[i] = nowMs();
        submissions.push(adapter.single({ i }));
      }
      await Promise.all(submissions);
      await until(
        "every job to start",
        () => (child.handled - before >= count ? true : undefined),
        { timeoutMs: 30_000, everyMs: 10 },
      );
      // The worker keeps running; its start times so far are collected by a stop/start cycle.
      const stopped = await child.request({ type: "stop" }, "stopped");
      await child.request({ type: "prepare" }, "prepared");
      await child.request({ type: "start" }, "started");
      return stopped.starts
        .filter(([i]) => i < count)
        .map(([i, startedAt]) => startedAt - offsetMs - sentAt[i]!);
    },
    async close() {
      await child.request({ type: "stop" }, "stopped").catch(() => {});
      await child.exit();
      await adapter.drop();
    },
  };
}

/** Adds one series' latencies to the figures. */
export function addLatencySeries(
  figures: LatencyFigures,
  latencies: readonly number[],
  missedAfterMs: number,
): void {
  figures.p50.push(percentile(latencies, 50));
  figures.p95.push(percentile(latencies, 95));
  figures.p99.push(percentile(latencies, 99));
  figures.max.push(Math.max(...latencies));
  figures.missed.push(latencies.filter((l) => l > missedAfterMs).length);
}

export function emptyLatencyFigures(): LatencyFigures {
  return { p50: [], p95: [], p99: [], max: [], missed: [] };
}

/** A warm-up series of 50 jobs, then `reps` series of `jobs`, for one variant. */
export async function measureLatency(
  ctx: BenchContext,
  variant: LatencyVariant,
  jobs: number,
): Promise<LatencyFigures> {
  const { reps } = ctx.settings;
  const figures = emptyLatencyFigures();
  const rig = await openLatencyRig(ctx, variant);
  try {
    for (let rep = 0; rep <= reps; rep++) {
      const warmup = rep === 0;
      const count = warmup ? Math.min(50, jobs) : jobs;
      ctx.progress.step(
        `${variant.label}: ${count} jobs, one per ${ctx.settings.latency.intervalMs} ms, ${warmup ? "warm-up" : `rep ${rep}/${reps}`}`,
      );
      const latencies = await rig.series(count);
      if (!warmup) addLatencySeries(figures, latencies, ctx.settings.latency.missedAfterMs);
    }
  } finally {
    await rig.close();
  }
  return figures;
}

export function latencyResults(
  scenario: string,
  variant: LatencyVariant,
  figures: LatencyFigures,
  jobs: number,
  ctx: BenchContext,
  compare: boolean,
): Result[] {
  const kase = `${variant.label}, ${jobs.toLocaleString("en-US")} jobs, one per ${ctx.settings.latency.intervalMs} ms`;
  const metric = (name: keyof LatencyFigures, unit: string, label: string): Result => ({
    scenario,
    system: variant.system,
    case: kase,
    metric: label,
    unit,
    better: "lower",
    summary: summarize(figures[name]),
    ...(variant.variant ? { variant: variant.variant } : {}),
    ...(compare && name !== "missed" ? { compareKey: `latency-${name}` } : {}),
  });
  return [
    metric("p50", "ms", "latency p50"),
    metric("p95", "ms", "latency p95"),
    metric("p99", "ms", "latency p99"),
    metric("max", "ms", "latency max"),
    metric("missed", "jobs", `started > ${ctx.settings.latency.missedAfterMs} ms late`),
  ];
}

/** Scenario 4: pgwake's wake latency, with NOTIFY and in poll-only mode. */
export async function latencyScenario(ctx: BenchContext): Promise<void> {
  const { jobs } = ctx.settings.latency;
  const variants: LatencyVariant[] = [
    { system: "pgwake", label: "NOTIFY on", child: { notify: true } },
    {
      system: "pgwake",
      label: "poll-only (notify: false, default 2 s poll)",
      child: { notify: false },
    },
  ];
  for (const variant of variants) {
    const figures = await measureLatency(ctx, variant, jobs);
    ctx.results.push(...latencyResults("latency", variant, figures, jobs, ctx, false));
  }
}
