import client from "prom-client";
import type { Pgwake } from "../client.ts";
import { SchemaSql } from "../db/sql.ts";
import { queueStats } from "../jobs/queueStats.ts";
import { JOB_STATUSES } from "../jobs/types.ts";
import type { Logger } from "../logger.ts";
import { finishedJobs } from "./sql/finishedJobs.ts";
import { metricsStart, retryEvents } from "./sql/retryEvents.ts";

/** Rows finished this recently are left for the next scrape: they may still be committing. */
const COMMIT_LAG_MS = 5_000;
/** At most this many finished jobs are observed per scrape; the rest wait for the next one. */
const SCRAPE_LIMIT = 20_000;

const DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
];

/**
 * The API's Prometheus metrics, in a registry of its own (several apps in one process must not
 * share prom-client's global one).
 *
 * - Counted by this process as it serves: HTTP request durations, jobs it enqueued.
 * - Read from the database at scrape time: queue depth and jobs by status (gauges, the table's
 *   current content), and — from a watermark over `finished_at` — jobs completed, failed and
 *   cancelled plus their run and wait times, and retries from the event log. These counters
 *   start at zero when the process starts and count what finished since; every API replica
 *   reports the same fleet-wide totals, so aggregate them with `max`, not `sum`.
 */
export class ApiMetrics {
  readonly registry = new client.Registry();
  readonly httpDuration: client.Histogram<"method" | "route" | "status">;
  readonly enqueued: client.Counter<"queue" | "task">;
  private readonly completed: client.Counter<"queue" | "task">;
  private readonly failed: client.Counter<"queue" | "task">;
  private readonly cancelled: client.Counter<"queue" | "task">;
  private readonly retried: client.Counter<"queue" | "task" | "kind">;
  private readonly runTime: client.Histogram<"queue" | "task" | "status">;
  private readonly waitTime: client.Histogram<"queue" | "task">;
  private readonly depth: client.Gauge<"queue">;
  private readonly jobs: client.Gauge<"queue" | "status">;
  private readonly paused: client.Gauge<"queue">;
  private readonly oldestAge: client.Gauge<"queue">;
  private readonly dbUp: client.Gauge;
  private readonly sql: SchemaSql;
  private watermark: { atUs: number; id: number; eventId: number } | undefined;
  private scraping: Promise<void> | undefined;

  private readonly pgwake: Pgwake;
  private readonly logger: Logger;

  constructor(pgwake: Pgwake, logger: Logger) {
    this.pgwake = pgwake;
    this.logger = logger;
    this.sql = new SchemaSql(pgwake.schema);
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: "pgwake_api_" });
    this.httpDuration = new client.Histogram({
      name: "pgwake_http_request_duration_seconds",
      help: "HTTP requests served by this API process, by method, route pattern and status",
      labelNames: ["method", "route", "status"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.enqueued = new client.Counter({
      name: "pgwake_jobs_enqueued_total",
      help: "Jobs created through this API process (duplicates of an idempotency key excluded)",
      labelNames: ["queue", "task"],
      registers,
    });
    this.completed = new client.Counter({
      name: "pgwake_jobs_completed_total",
      help: "Jobs seen completing in the database since this process started (fleet-wide)",
      labelNames: ["queue", "task"],
      registers,
    });
    this.failed = new client.Counter({
      name: "pgwake_jobs_failed_total",
      help: "Jobs seen failing for good in the database since this process started (fleet-wide)",
      labelNames: ["queue", "task"],
      registers,
    });
    this.cancelled = new client.Counter({
      name: "pgwake_jobs_cancelled_total",
      help: "Jobs seen cancelled in the database since this process started (fleet-wide)",
      labelNames: ["queue", "task"],
      registers,
    });
    this.retried = new client.Counter({
      name: "pgwake_jobs_retried_total",
      help: "Retries seen in the job event log since this process started: kind=automatic after a failed attempt, kind=manual by request",
      labelNames: ["queue", "task", "kind"],
      registers,
    });
    this.runTime = new client.Histogram({
      name: "pgwake_job_duration_seconds",
      help: "Run time of the last attempt of finished jobs (claim to finish), observed at scrape",
      labelNames: ["queue", "task", "status"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.waitTime = new client.Histogram({
      name: "pgwake_job_wait_seconds",
      help: "Time finished jobs waited from ready (run_at) to their last claim, observed at scrape",
      labelNames: ["queue", "task"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.depth = new client.Gauge({
      name: "pgwake_queue_depth",
      help: "Jobs waiting in the queue (pending + retrying), at scrape time",
      labelNames: ["queue"],
      registers,
    });
    this.jobs = new client.Gauge({
      name: "pgwake_jobs",
      help: "Jobs in the table by queue and status, at scrape time (terminal jobs leave with retention)",
      labelNames: ["queue", "status"],
      registers,
    });
    this.paused = new client.Gauge({
      name: "pgwake_queue_paused",
      help: "1 when the queue is paused",
      labelNames: ["queue"],
      registers,
    });
    this.oldestAge = new client.Gauge({
      name: "pgwake_queue_oldest_ready_age_seconds",
      help: "Age of the oldest job ready to run, 0 when none",
      labelNames: ["queue"],
      registers,
    });
    this.dbUp = new client.Gauge({
      name: "pgwake_metrics_database_up",
      help: "1 when the last scrape could read the database",
      registers,
    });
  }

  /** Prometheus text: database figures are refreshed first; an outage only sets database_up 0. */
  async render(): Promise<string> {
    // Concurrent scrapes share one database read, so two scrapers never double-count.
    this.scraping ??= this.refresh().finally(() => {
      this.scraping = undefined;
    });
    await this.scraping;
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private async refresh(): Promise<void> {
    try {
      const db = this.pgwake.pool;
      const stats = await queueStats(db, this.sql);
      this.depth.reset();
      this.jobs.reset();
      this.paused.reset();
      this.oldestAge.reset();
      for (const queue of stats) {
        this.depth.set({ queue: queue.name }, queue.counts.pending + queue.counts.retrying);
        for (const status of JOB_STATUSES) {
          this.jobs.set({ queue: queue.name, status }, queue.counts[status]);
        }
        this.paused.set({ queue: queue.name }, queue.paused ? 1 : 0);
        this.oldestAge.set({ queue: queue.name }, (queue.oldestPendingAgeMs ?? 0) / 1000);
      }
      if (!this.watermark) {
        // Count from now on: what finished before this process started is not ours to report.
        const start = await metricsStart(db, this.sql);
        this.watermark = {
          atUs: (start.now.getTime() - COMMIT_LAG_MS) * 1000,
          id: 0,
          eventId: start.id,
        };
      } else {
        await this.observeFinished();
      }
      this.dbUp.set(1);
    } catch (error) {
      this.dbUp.set(0);
      this.logger.warn({ err: error }, "metrics could not read the database");
    }
  }

  private async observeFinished(): Promise<void> {
    const mark = this.watermark!;
    const rows = await finishedJobs(this.pgwake.pool, this.sql, {
      afterUs: mark.atUs,
      afterId: mark.id,
      lagMs: COMMIT_LAG_MS,
      limit: SCRAPE_LIMIT,
    });
    for (const row of rows) {
      const labels = { queue: row.queue, task: row.task };
      if (row.status === "completed") this.completed.inc(labels);
      else if (row.status === "failed") this.failed.inc(labels);
      else this.cancelled.inc(labels);
      if (row.run_seconds !== null && row.run_seconds >= 0) {
        this.runTime.observe({ ...labels, status: row.status }, row.run_seconds);
      }
      if (row.wait_seconds !== null && row.wait_seconds >= 0) {
        this.waitTime.observe(labels, row.wait_seconds);
      }
    }
    const last = rows.at(-1);
    if (last) {
      mark.atUs = last.finished_us;
      mark.id = last.id;
    }
    const events = await retryEvents(this.pgwake.pool, this.sql, {
      afterId: mark.eventId,
      lagMs: COMMIT_LAG_MS,
      limit: SCRAPE_LIMIT,
    });
    for (const event of events) {
      this.retried.inc({
        queue: event.queue,
        task: event.task,
        kind: event.kind === "retried" ? "manual" : "automatic",
      });
    }
    const lastEvent = events.at(-1);
    if (lastEvent) mark.eventId = lastEvent.id;
  }
}
