import client, { type Counter, type Gauge, type Histogram, type Registry } from "prom-client";

const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];
const CLAIM_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5];
const SIZE_BUCKETS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000];

/**
 * A worker's Prometheus metrics, counted where things happen (in this process), never read back
 * from the database: sum them across workers. Served on the worker's health port (`/metrics`),
 * and merged into the API's `/metrics` when both run in one process (`pgwake start`).
 */
export class WorkerMetrics {
  readonly registry: Registry;
  readonly started: Counter<"queue" | "task">;
  readonly completed: Counter<"queue" | "task">;
  readonly failed: Counter<"queue" | "task" | "final">;
  readonly duration: Histogram<"queue" | "task" | "outcome">;
  readonly wait: Histogram<"queue">;
  readonly claims: Counter<"queue" | "kind">;
  readonly claimDuration: Histogram<"queue">;
  readonly claimSize: Histogram<"queue">;
  readonly renewals: Counter<"result">;
  readonly fences: Counter;
  readonly lost: Counter;
  readonly reconnects: Counter;
  readonly listening: Gauge;
  readonly running: Gauge;
  readonly buffered: Gauge;

  constructor(
    read: { running: () => number; buffered: () => number; listening: () => boolean },
    registry: Registry = new client.Registry(),
  ) {
    this.registry = registry;
    const registers = [registry];
    this.started = new client.Counter({
      name: "pgwake_jobs_started_total",
      help: "Handler runs started by this worker.",
      labelNames: ["queue", "task"],
      registers,
    });
    this.completed = new client.Counter({
      name: "pgwake_jobs_completed_total",
      help: "Jobs this worker completed (outcome written).",
      labelNames: ["queue", "task"],
      registers,
    });
    this.failed = new client.Counter({
      name: "pgwake_jobs_failed_total",
      help: "Failed attempts recorded by this worker; final=true when the job failed for good.",
      labelNames: ["queue", "task", "final"],
      registers,
    });
    this.duration = new client.Histogram({
      name: "pgwake_job_duration_seconds",
      help: "Handler run time.",
      labelNames: ["queue", "task", "outcome"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.wait = new client.Histogram({
      name: "pgwake_job_wait_seconds",
      help: "From a job being due to its claim (database clock).",
      labelNames: ["queue"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.claims = new client.Counter({
      name: "pgwake_claims_total",
      help: "Claim statements; kind=sweep for claims that read lanes from their start.",
      labelNames: ["queue", "kind"],
      registers,
    });
    this.claimDuration = new client.Histogram({
      name: "pgwake_claim_duration_seconds",
      help: "Claim statement round trips.",
      labelNames: ["queue"],
      buckets: CLAIM_BUCKETS,
      registers,
    });
    this.claimSize = new client.Histogram({
      name: "pgwake_claim_size",
      help: "Jobs taken per claim.",
      labelNames: ["queue"],
      buckets: SIZE_BUCKETS,
      registers,
    });
    this.renewals = new client.Counter({
      name: "pgwake_lease_renewals_total",
      help: "Heartbeats; result=failed when the database did not answer.",
      labelNames: ["result"],
      registers,
    });
    this.fences = new client.Counter({
      name: "pgwake_lease_fences_total",
      help: "Times this worker stopped its jobs and claims for not renewing its lease in time.",
      registers,
    });
    this.lost = new client.Counter({
      name: "pgwake_jobs_lost_total",
      help: "Jobs this worker held that were taken from it (cancelled, or reaped).",
      registers,
    });
    this.reconnects = new client.Counter({
      name: "pgwake_listener_reconnects_total",
      help: "Times the LISTEN connection was lost and reopened.",
      registers,
    });
    this.listening = new client.Gauge({
      name: "pgwake_listener_connected",
      help: "1 while the LISTEN connection is up.",
      registers,
      collect() {
        this.set(read.listening() ? 1 : 0);
      },
    });
    this.running = new client.Gauge({
      name: "pgwake_worker_running_jobs",
      help: "Handlers running now.",
      registers,
      collect() {
        this.set(read.running());
      },
    });
    this.buffered = new client.Gauge({
      name: "pgwake_worker_buffered_jobs",
      help: "Jobs claimed and waiting for a free slot.",
      registers,
      collect() {
        this.set(read.buffered());
      },
    });
  }
}
