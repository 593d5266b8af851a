import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import {
  CURRENT_SLOT,
  FINISHED_JOB,
  LIVE_JOB,
  moveToHistory,
  releaseJobKeys,
  releaseSlots,
  reviveFromHistory,
} from "./history.ts";
import { type Job, type JobRow, type JobStatus, toJob } from "./types.ts";

// A job not yet finished is cancelled outright: it moves to history as `cancelled`. A running
// job's worker is told at once on the control channel and aborts the handler's signal; its late
// outcome is refused by the state guard (the row is gone from `jobs`). Under a limit, the running
// job's slot stays taken (a row of `slot_holds`) until the worker says its handler returned.
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
   -- A running job's slot is held until its worker says the handler returned (releaseHolds).
   held AS (
     INSERT INTO {{schema}}.slot_holds (job_id, queue, concurrency_key, worker_id)
     SELECT g.id, g.queue, g.concurrency_key, g.lease_owner FROM gone g
     WHERE g.was = 'running' AND g.held_slot AND g.lease_owner IS NOT NULL
   ),
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

// The slots a worker's cancelled jobs held, given back once their handlers returned; waiting
// workers of those queues are woken.
const RELEASE_HOLDS = statement(
  "release_slot_holds",
  `WITH gone AS MATERIALIZED (
     DELETE FROM {{schema}}.slot_holds h
     WHERE h.job_id = ANY ($1::bigint[]) AND h.worker_id = $2
     RETURNING h.queue, h.concurrency_key, true AS held_slot
   ), ${releaseSlots("gone")},
   woken AS (
     SELECT {{schema}}.wake_queues(array_agg(DISTINCT queue)) FROM gone
   )
   SELECT ARRAY(SELECT DISTINCT queue FROM gone) AS queues FROM woken`,
);

/**
 * Gives back the slots that `workerId`'s cancelled jobs `ids` held (their handlers returned);
 * returns the queues that got slots back.
 */
export async function releaseHolds(
  db: Queryable,
  sql: SchemaSql,
  workerId: string,
  ids: readonly number[],
): Promise<string[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<{ queues: string[] }>({
    ...sql.bind(RELEASE_HOLDS),
    values: [ids, workerId],
  });
  return rows[0]?.queues ?? [];
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

// Failed and cancelled jobs back to `jobs` by id (reviveFromHistory, as the bulk retry does over a
// filter): pending now with a fresh attempt budget, behind what is already ready; their
// idempotency key reserved again; a job whose key another live job now holds is not retried (the
// caller says why); waiting workers are woken.
const RETRY_JOBS = statement(
  "retry_jobs",
  `WITH picked AS MATERIALIZED (
     SELECT h.id, h.queue, h.idempotency_key FROM {{schema}}.job_history h
     WHERE h.id = ANY ($1::bigint[]) AND h.status IN ('failed', 'cancelled')
   ), ${reviveFromHistory("picked", "NULL")}
   SELECT ${LIVE_JOB}
   FROM revived j CROSS JOIN (SELECT NULL::timestamptz AS lease_expires_at, (SELECT count(*) FROM woken) AS woke) w`,
);

const KEY_HOLDER = statement(
  "idempotency_key_holder",
  `SELECT k.job_id FROM {{schema}}.job_keys k
   JOIN {{schema}}.jobs j ON j.id = k.job_id
   WHERE k.queue = $1 AND k.key = $2 AND k.job_id <> $3`,
);

/**
 * The live job that holds a finished job's idempotency key (so the finished one cannot be
 * retried), or null.
 */
export async function keyHolder(db: Queryable, sql: SchemaSql, job: Job): Promise<number | null> {
  if (job.idempotencyKey === null) return null;
  const { rows } = await db.query<{ job_id: number }>({
    ...sql.bind(KEY_HOLDER),
    values: [job.queue, job.idempotencyKey, job.id],
  });
  return rows[0]?.job_id ?? null;
}

/**
 * Re-queues failed or cancelled jobs; returns those it re-queued (not those whose idempotency key
 * another live job holds now: see `keyHolder`).
 */
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
