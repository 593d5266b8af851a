import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { type Job, type JobRow, type JobStatus, toJob } from "./types.ts";

// Pending and retrying jobs are cancelled outright. A running job is marked cancelled too, so
// its worker's outcome is refused by the state guard; the worker is told at once on the control
// channel and aborts the handler's signal.
const CANCEL_JOBS = statement(
  "cancel_jobs",
  `WITH target AS (
     SELECT id, status AS was FROM {{schema}}.jobs
     WHERE id = ANY ($1::bigint[]) AND status IN ('pending', 'retrying', 'running')
     FOR UPDATE
   ), updated AS (
     UPDATE {{schema}}.jobs j
     SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL, updated_at = now()
     FROM target WHERE j.id = target.id
     RETURNING j.*, target.was
   ), events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data)
     SELECT id, 'cancelled', attempts, CASE WHEN was = 'running' THEN lease_owner END,
            'cancelled while ' || was,
            jsonb_build_object('was', was, 'reason', $2::text)
              || CASE WHEN was = 'running' THEN jsonb_build_object('startedAt', started_at) ELSE '{}' END
     FROM updated
   )
   SELECT u.*, CASE WHEN u.was = 'running'
                 THEN pg_notify({{control_channel}}, 'cancel ' || u.id) END AS notified
   FROM updated u`,
);

export interface CancelledJob {
  job: Job;
  /** The status the job had when it was cancelled. */
  was: JobStatus;
}

/** Cancels jobs that have not finished; returns those it cancelled. */
export async function cancelJobs(
  db: Queryable,
  sql: SchemaSql,
  ids: readonly number[],
  reason = "cancelled by request",
): Promise<CancelledJob[]> {
  const { rows } = await db.query<JobRow & { was: JobStatus }>({
    ...sql.bind(CANCEL_JOBS),
    values: [ids, reason],
  });
  return rows.map((row) => ({ job: toJob(row), was: row.was }));
}

// Brings failed and cancelled jobs back with a fresh attempt budget.
const RETRY_JOBS = statement(
  "retry_jobs",
  `WITH updated AS (
     UPDATE {{schema}}.jobs j
     SET status = 'pending', attempts = 0, run_at = now(), finished_at = NULL, started_at = NULL,
         result = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE j.id = ANY ($1::bigint[]) AND j.status IN ('failed', 'cancelled')
     RETURNING j.*
   ), events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, message)
     SELECT id, 'retried', 'sent back to the queue with a fresh attempt budget' FROM updated
   ), woken AS (
     SELECT {{schema}}.wake(array_agg(DISTINCT queue)) FROM updated
   )
   SELECT u.* FROM updated u, woken`,
);

/** Re-queues failed or cancelled jobs; returns those it re-queued. */
export async function retryJobs(
  db: Queryable,
  sql: SchemaSql,
  ids: readonly number[],
): Promise<Job[]> {
  const { rows } = await db.query<JobRow>({ ...sql.bind(RETRY_JOBS), values: [ids] });
  return rows.map((row) => toJob(row));
}

const GET_JOBS = statement(
  "get_jobs",
  "SELECT * FROM {{schema}}.jobs WHERE id = ANY ($1::bigint[])",
);

/** Reads one job, or null. */
export async function getJob(db: Queryable, sql: SchemaSql, id: number): Promise<Job | null> {
  const { rows } = await db.query<JobRow>({ ...sql.bind(GET_JOBS), values: [[id]] });
  return rows[0] ? toJob(rows[0]) : null;
}

const SET_QUEUE_PAUSED = statement(
  "set_queue_paused",
  `WITH q AS (
     INSERT INTO {{schema}}.queues AS q (name, paused) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
     RETURNING q.name, q.paused, q.updated_at
   ), woken AS (
     SELECT {{schema}}.wake(CASE WHEN $2 THEN NULL ELSE ARRAY[$1::text] END)
   )
   SELECT q.* FROM q, woken`,
);

export interface QueueSettings {
  name: string;
  paused: boolean;
  updatedAt: Date;
}

/** Pauses or resumes a queue for every worker; resuming wakes the waiting ones. */
export async function setQueuePaused(
  db: Queryable,
  sql: SchemaSql,
  queue: string,
  paused: boolean,
): Promise<QueueSettings> {
  const { rows } = await db.query<{ name: string; paused: boolean; updated_at: Date }>({
    ...sql.bind(SET_QUEUE_PAUSED),
    values: [queue, paused],
  });
  const row = rows[0]!;
  return { name: row.name, paused: row.paused, updatedAt: row.updated_at };
}
