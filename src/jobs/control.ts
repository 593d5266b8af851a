import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import {
  CURRENT_SLOT,
  FINISHED_JOB,
  LIVE_JOB,
  moveToHistory,
  releaseJobKeys,
  releaseSlots,
} from "./history.ts";
import { type Job, type JobRow, type JobStatus, toJob } from "./types.ts";

// A job not yet finished is cancelled outright: it moves to history as `cancelled`. A running
// job's worker is told at once on the control channel and aborts the handler's signal; its late
// outcome is refused by the state guard (the row is gone from `jobs`).
const CANCEL_JOBS = statement(
  "cancel_jobs",
  `WITH target AS (
     SELECT id, status AS was FROM {{schema}}.jobs WHERE id = ANY ($1::bigint[]) FOR UPDATE
   ), gone AS (
     DELETE FROM {{schema}}.jobs j USING target t WHERE j.id = t.id
     RETURNING j.*, t.was, 'cancelled'::text AS outcome_status, NULL::jsonb AS outcome_result,
               NULL::jsonb AS outcome_error
   ), slot AS MATERIALIZED (${CURRENT_SLOT}),
   moved AS (${moveToHistory("gone", "slot", true)}),
   ${releaseSlots("(SELECT * FROM gone WHERE was = 'running')")},
   ${releaseJobKeys("gone")},
   events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data, slot)
     SELECT g.id, 'cancelled', g.attempts, CASE WHEN g.was = 'running' THEN g.lease_owner END,
            'cancelled while ' || g.was,
            jsonb_build_object('was', g.was, 'reason', $2::text)
              || CASE WHEN g.was = 'running' THEN jsonb_build_object('startedAt', g.started_at)
                      ELSE '{}'::jsonb END,
            slot.s
     FROM gone g, slot
   ), counted AS (
     SELECT {{schema}}.count_minute(c.queue, cancelled => c.n)
     FROM (SELECT queue, count(*) AS n FROM gone GROUP BY queue) c
   )
   SELECT ${FINISHED_JOB}, g.was,
          CASE WHEN g.was = 'running'
               THEN pg_notify({{control_channel}}, json_build_object('cancel', g.id)::text) END
            AS notified,
          (SELECT count(*) FROM counted) AS counted
   FROM moved h JOIN gone g ON g.id = h.id`,
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

// Brings failed and cancelled jobs back from history with a fresh attempt budget, ready now with a
// fresh ready_seq (behind what is already ready), and wakes waiting workers for them.
const RETRY_JOBS = statement(
  "retry_jobs",
  `WITH back AS (
     DELETE FROM {{schema}}.job_history h
     WHERE h.id = ANY ($1::bigint[]) AND h.status IN ('failed', 'cancelled')
     RETURNING h.*
   ), revived AS (
     INSERT INTO {{schema}}.jobs AS j
       (id, queue, task, payload, status, priority, run_at, attempts, max_attempts, timeout_ms,
        idempotency_key, request_id, last_error, created_at, updated_at, ready_seq,
        concurrency_key)
     OVERRIDING SYSTEM VALUE
     SELECT b.id, b.queue, b.task, b.payload, 'pending', b.priority, now(), 0, b.max_attempts,
            b.timeout_ms, b.idempotency_key, b.request_id, b.last_error, b.created_at, now(),
            nextval('{{schema}}.jobs_id_seq'::regclass), b.concurrency_key
     FROM back b
     RETURNING j.*
   ), revived_keys AS (
     INSERT INTO {{schema}}.queue_keys (queue, key)
     SELECT DISTINCT r.queue, r.concurrency_key FROM revived r WHERE r.concurrency_key IS NOT NULL
     ORDER BY 1, 2
     ON CONFLICT (queue, key) DO NOTHING
   ), events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, message, slot)
     SELECT r.id, 'retried', 'sent back to the queue with a fresh attempt budget',
            {{schema}}.history_slot(now())
     FROM revived r
   ), woken AS (
     SELECT {{schema}}.wake(coalesce(jsonb_object_agg(q.queue, jsonb_build_object('n', q.n, 't', q.tasks)), '{}'::jsonb))
     FROM (SELECT r.queue, count(*) AS n, jsonb_agg(DISTINCT r.task) AS tasks
           FROM revived r GROUP BY r.queue) q
     WHERE pg_sequence_last_value('{{schema}}.waiting'::regclass) > 0
   )
   SELECT ${LIVE_JOB}
   FROM revived j CROSS JOIN (SELECT NULL::timestamptz AS lease_expires_at, (SELECT count(*) FROM woken) AS woke) w`,
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

// Live jobs (with the holding worker's lease) and finished ones. A job is in one table at a time:
// every move between them is one statement.
const GET_JOBS = statement(
  "get_jobs",
  `SELECT ${LIVE_JOB} FROM {{schema}}.jobs j
   LEFT JOIN {{schema}}.workers w ON w.id = j.lease_owner
   WHERE j.id = ANY ($1::bigint[])
   UNION ALL
   SELECT ${FINISHED_JOB} FROM {{schema}}.job_history h WHERE h.id = ANY ($1::bigint[])`,
);

/** Reads jobs by id, live or finished (missing ids are left out). */
export async function getJobs(
  db: Queryable,
  sql: SchemaSql,
  ids: readonly number[],
): Promise<Job[]> {
  const { rows } = await db.query<JobRow>({ ...sql.bind(GET_JOBS), values: [ids] });
  return rows.map((row) => toJob(row));
}

/** Reads one job, or null. */
export async function getJob(db: Queryable, sql: SchemaSql, id: number): Promise<Job | null> {
  return (await getJobs(db, sql, [id]))[0] ?? null;
}

// Resuming wakes the waiting workers of the queue, to sweep: its jobs waited while their cursors
// did not move, but a sweep is cheap next to a pause.
const SET_QUEUE_PAUSED = statement(
  "set_queue_paused",
  `WITH q AS (
     INSERT INTO {{schema}}.queues AS q (name, paused) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
     RETURNING q.name, q.paused, q.updated_at
   ), woken AS (
     SELECT {{schema}}.wake_queues(CASE WHEN $2 THEN NULL ELSE ARRAY[$1::text] END)
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
