import type { SerializedError } from "../errors.ts";

/**
 * Where a job is in its life (DESIGN.md, "Job lifecycle"): `scheduled` (due later), `pending`
 * (ready: claimable), `running` (held by a worker), `retrying` (a failed attempt waiting for its
 * backoff) live in `jobs`; `completed`, `failed` and `cancelled` are finished and live in
 * `job_history`. The SQL of 0003_engine.sql spells the same sets (checked by a test).
 */
export const JOB_STATUSES = [
  "scheduled",
  "pending",
  "running",
  "retrying",
  "completed",
  "failed",
  "cancelled",
] as const;

export type JobStatus = (typeof JOB_STATUSES)[number];

/** Statuses of jobs still in `jobs`. */
export const LIVE_STATUSES = ["scheduled", "pending", "running", "retrying"] as const;
/** Statuses of finished jobs, kept in `job_history` for the retention period. */
export const TERMINAL_STATUSES = ["completed", "failed", "cancelled"] as const;
export type LiveStatus = (typeof LIVE_STATUSES)[number];
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

/** A job as stored in `jobs`, in camelCase. */
export interface Job<Payload = unknown> {
  id: number;
  queue: string;
  task: string;
  payload: Payload;
  status: JobStatus;
  priority: number;
  runAt: Date;
  attempts: number;
  maxAttempts: number;
  timeoutMs: number | null;
  idempotencyKey: string | null;
  requestId: string | null;
  /** The worker that holds the job (running) or last held it. */
  leaseOwner: string | null;
  /** Until when the holding worker's lease runs (running jobs only). */
  leaseExpiresAt: Date | null;
  /** The key whose limits the job counts against (flow control), if any. */
  concurrencyKey: string | null;
  /** The W3C trace context of the span that enqueued the job (live jobs only). */
  traceParent: string | null;
  traceState: string | null;
  result: unknown;
  lastError: SerializedError | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
}

export interface JobRow {
  id: number;
  queue: string;
  task: string;
  payload: unknown;
  status: JobStatus;
  priority: number;
  run_at: Date;
  attempts: number;
  max_attempts: number;
  timeout_ms: number | null;
  idempotency_key: string | null;
  request_id: string | null;
  lease_owner: string | null;
  concurrency_key?: string | null;
  trace_parent?: string | null;
  trace_state?: string | null;
  /** Only where a read joins the holding worker's lease. */
  lease_expires_at?: Date | null;
  /** Only on finished jobs. */
  result?: unknown;
  last_error: SerializedError | null;
  created_at: Date;
  started_at: Date | null;
  finished_at?: Date | null;
  updated_at: Date;
}

export function toJob<Payload = unknown>(row: JobRow): Job<Payload> {
  return {
    id: row.id,
    queue: row.queue,
    task: row.task,
    payload: row.payload as Payload,
    status: row.status,
    priority: row.priority,
    runAt: row.run_at,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    timeoutMs: row.timeout_ms,
    idempotencyKey: row.idempotency_key,
    requestId: row.request_id,
    leaseOwner: row.lease_owner,
    leaseExpiresAt: row.lease_expires_at ?? null,
    concurrencyKey: row.concurrency_key ?? null,
    traceParent: row.trace_parent ?? null,
    traceState: row.trace_state ?? null,
    result: row.result ?? null,
    lastError: row.last_error,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at ?? null,
    updatedAt: row.updated_at,
  };
}
