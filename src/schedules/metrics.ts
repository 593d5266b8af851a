import client from "prom-client";
import type { RunDueSchedulesResult } from "./service.ts";
import { SKIP_REASONS } from "./types.ts";

/** Metric names, declared once for the registry and the docs. */
export const SCHEDULE_METRICS = {
  fired: "pgwake_schedule_ticks_fired_total",
  skipped: "pgwake_schedule_ticks_skipped_total",
  late: "pgwake_schedule_ticks_late_total",
  lateness: "pgwake_schedule_tick_lateness_seconds",
} as const;

const LATENESS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600];

/**
 * The schedule service's counters in a Prometheus registry. Each tick is decided by exactly one
 * process, so summing these over the fleet counts every tick once.
 */
export class ScheduleMetrics {
  private readonly fired: client.Counter;
  private readonly skipped: client.Counter<"reason">;
  private readonly late: client.Counter;
  private readonly lateness: client.Histogram;

  constructor(registry: client.Registry) {
    const registers = [registry];
    this.fired = new client.Counter({
      name: SCHEDULE_METRICS.fired,
      help: "Schedule ticks that made a job, fired by this process",
      registers,
    });
    this.skipped = new client.Counter({
      name: SCHEDULE_METRICS.skipped,
      help: "Schedule ticks decided without a job, by reason (missed, merged, beyond_limit, overlap)",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of SKIP_REASONS) this.skipped.inc({ reason }, 0);
    this.late = new client.Counter({
      name: SCHEDULE_METRICS.late,
      help: "Schedule ticks whose job was made later than the service's lateAfterMs after the tick",
      registers,
    });
    this.lateness = new client.Histogram({
      name: SCHEDULE_METRICS.lateness,
      help: "How long after its tick a tick's job was made (0 when made ahead of it)",
      buckets: LATENESS_BUCKETS,
      registers,
    });
  }

  /** Counts one pass of `runDueSchedules`. */
  observe(result: RunDueSchedulesResult): void {
    if (result.fired > 0) this.fired.inc(result.fired);
    for (const reason of SKIP_REASONS) {
      if (result.skipped[reason] > 0) this.skipped.inc({ reason }, result.skipped[reason]);
    }
    if (result.late > 0) this.late.inc(result.late);
    for (const ms of result.latenessMs) this.lateness.observe(Math.max(0, ms) / 1000);
  }
}
