import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import type { SerializedError } from "../errors.ts";
import { CURRENT_SLOT, moveToHistory, releaseJobKeys, releaseSlots } from "./history.ts";

// One statement per batch of failed attempts. An attempt that may be retried puts its job back:
// `retrying` until its backoff ends (promoted by a claim of its queue then), or straight to
// `pending` with a fresh ready_seq when there is no backoff. The last attempt, or a permanent
// error, moves the job to history as `failed` (the dead-letter set). Every attempt leaves an
// event with its error and when its claim started; retries say when they will run.
// Guarded like completion, in the UPDATE and DELETE themselves: a job reaped and claimed again
// while this statement waited for its row is not touched.
const FAIL_JOBS = statement(
  "fail_jobs",
  `WITH f AS (
     SELECT * FROM unnest($1::bigint[], $2::integer[], $3::jsonb[], $4::bigint[], $5::boolean[])
       AS f(id, attempt, error, delay_ms, permanent)
   ), retried AS (
     UPDATE {{schema}}.jobs j
     SET status = CASE WHEN f.delay_ms <= 0 THEN 'pending' ELSE 'retrying' END,
         run_at = now() + f.delay_ms * interval '1 millisecond',
         ready_seq = CASE WHEN f.delay_ms <= 0 THEN nextval('{{schema}}.jobs_id_seq'::regclass)
                          ELSE j.ready_seq END,
         last_error = f.error,
         held_slot = false,
         updated_at = now()
     FROM f
     WHERE j.id = f.id AND j.status = 'running' AND j.lease_owner = $6 AND j.attempts = f.attempt
       AND NOT f.permanent AND j.attempts < j.max_attempts
     RETURNING j.id, j.queue, j.status, j.attempts, j.run_at, j.started_at, f.delay_ms
   ), held AS MATERIALIZED (
     -- What the retried rows held before this statement (RETURNING gives the new values).
     SELECT j.id, j.queue, j.concurrency_key, j.held_slot FROM {{schema}}.jobs j
     WHERE j.id = ANY ($1::bigint[]) AND j.held_slot
   ), failed AS (
     DELETE FROM {{schema}}.jobs j USING f
     WHERE j.id = f.id AND j.status = 'running' AND j.lease_owner = $6 AND j.attempts = f.attempt
       AND (f.permanent OR j.attempts >= j.max_attempts)
     RETURNING j.*, 'failed'::text AS outcome_status, NULL::jsonb AS outcome_result,
               f.error AS outcome_error, f.permanent
   ), slot AS MATERIALIZED (${CURRENT_SLOT}),
   moved AS (${moveToHistory("failed", "slot")}),
   ended AS (
     SELECT h.queue, h.concurrency_key, h.held_slot FROM held h WHERE h.id IN (SELECT id FROM retried)
     UNION ALL SELECT queue, concurrency_key, held_slot FROM failed
   ),
   ${releaseSlots("ended")},
   ${releaseJobKeys("failed")},
   events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data, slot)
     SELECT u.id, 'attempt_failed', u.attempts, $6, f.error->>'message',
            jsonb_build_object('error', f.error, 'startedAt', u.started_at), slot.s
     FROM (SELECT id, attempts, started_at FROM retried
           UNION ALL SELECT id, attempts, started_at FROM failed) u
     JOIN f ON f.id = u.id, slot
     UNION ALL
     SELECT r.id, 'retry_scheduled', r.attempts, $6,
            'retry at ' || to_char(r.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
            jsonb_build_object('runAt', r.run_at, 'delayMs', r.delay_ms), slot.s
     FROM retried r, slot
     UNION ALL
     SELECT x.id, 'failed', x.attempts, $6,
            CASE WHEN x.permanent THEN 'failed permanently' ELSE 'out of attempts' END, NULL, slot.s
     FROM failed x, slot
     UNION ALL
     SELECT f.id, 'outcome_ignored', f.attempt, $6,
            'failure of attempt ' || f.attempt || ' ignored: the worker no longer held the job',
            NULL::jsonb, slot.s
     FROM f, slot
     WHERE f.id NOT IN (SELECT id FROM retried) AND f.id NOT IN (SELECT id FROM failed)
   )
   SELECT id, queue, status, run_at FROM retried
   UNION ALL
   SELECT id, queue, 'failed', run_at FROM failed`,
);

export interface Failure {
  id: number;
  attempt: number;
  error: SerializedError;
  /** Backoff before the next attempt, decided by the task's policy. */
  delayMs: number;
  /** Fail now whatever attempts remain. */
  permanent: boolean;
}

export interface FailedJob {
  id: number;
  queue: string;
  /** `retrying` (due later), `pending` (retry at once) or `failed` (for good). */
  status: "retrying" | "pending" | "failed";
  runAt: Date;
}

/** Records failed attempts for jobs held by `workerId`; returns what became of each. */
export async function failJobs(
  db: Queryable,
  sql: SchemaSql,
  workerId: string,
  failures: readonly Failure[],
): Promise<FailedJob[]> {
  const { rows } = await db.query<{
    id: number;
    queue: string;
    status: FailedJob["status"];
    run_at: Date;
  }>({
    ...sql.bind(FAIL_JOBS),
    values: [
      failures.map((f) => f.id),
      failures.map((f) => f.attempt),
      failures.map((f) => JSON.stringify(f.error)),
      failures.map((f) => Math.max(0, Math.round(f.delayMs))),
      failures.map((f) => f.permanent),
      workerId,
    ],
  });
  return rows.map((r) => ({ id: r.id, queue: r.queue, status: r.status, runAt: r.run_at }));
}
