import type { SerializedError } from "../errors.ts";

export const JOB_STATUSES = [
  "pending",
  "running",
  "retrying",
  "completed",
  "failed",
  "cancelled",
] as const;

/** Where a job is in its life; see the lifecycle in DESIGN.md. */
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: readonly JobStatus[] = ["completed", "failed", "cancelled"];

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
  leaseExpiresAt: Date | null;
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
  lease_expires_at: Date | null;
  result: unknown;
  last_error: SerializedError | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
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
    leaseExpiresAt: row.lease_expires_at,
    result: row.result,
    lastError: row.last_error,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    updatedAt: row.updated_at,
  };
}
