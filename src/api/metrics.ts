import client from "prom-client";
import type { Pgwake } from "../client.ts";
import { SchemaSql } from "../db/sql.ts";
import { queueStats } from "../jobs/queueStats.ts";
import { JOB_STATUSES } from "../jobs/types.ts";
import type { Logger } from "../logger.ts";

/**
 * The API's Prometheus metrics, in a registry of its own (several apps in one process must not
 * share prom-client's global one).
 *
 * - Counted by this process as it serves: HTTP request durations, jobs it submitted.
 * - Read from the database at scrape time: queue depth, jobs by status, pause flags and the
 *   oldest ready job's age (gauges of the current content, the same in every replica).
 * - Process metrics under their standard names (`process_*`, `nodejs_*`), so stock Node.js
 *   dashboards work.
 *
 * Jobs completed, failed and retried are counted by the workers that finish them, on their own
 * metrics port: a counter read back from the table here would start at the first scrape and
 * miss what retention deleted in between.
 */
export class ApiMetrics {
  readonly registry = new client.Registry();
  readonly httpDuration: client.Histogram<"method" | "route" | "status">;
  readonly enqueued: client.Counter<"queue" | "task">;
  private readonly depth: client.Gauge<"queue">;
  private readonly jobs: client.Gauge<"queue" | "status">;
  private readonly paused: client.Gauge<"queue">;
  private readonly oldestAge: client.Gauge<"queue">;
  private readonly dbUp: client.Gauge;
  private readonly sql: SchemaSql;
  private scraping: Promise<void> | undefined;
  private readonly pgwake: Pgwake;
  private readonly logger: Logger;

  /** Metrics of other parts of this process shown with the API's (a worker, under `pgwake start`). */
  private readonly extra: readonly client.Registry[];

  constructor(pgwake: Pgwake, logger: Logger, extra: readonly client.Registry[] = []) {
    this.extra = extra;
    this.pgwake = pgwake;
    this.logger = logger;
    this.sql = new SchemaSql(pgwake.schema);
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry });
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

  /** Prometheus text: queue gauges are read first; an outage only sets database_up 0. */
  async render(): Promise<string> {
    // Concurrent scrapes share one database read.
    this.scraping ??= this.refresh().finally(() => {
      this.scraping = undefined;
    });
    await this.scraping;
    if (this.extra.length === 0) return this.registry.metrics();
    return client.Registry.merge([this.registry, ...this.extra]).metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private async refresh(): Promise<void> {
    try {
      const stats = await queueStats(this.pgwake.pool, this.sql);
      // Reset first: a queue that is gone (its jobs deleted, no worker, no setting) disappears.
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
      this.dbUp.set(1);
    } catch (error) {
      this.dbUp.set(0);
      this.logger.warn({ err: error }, "metrics could not read the database");
    }
  }
}
