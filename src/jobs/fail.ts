import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import type { SerializedError } from "../errors.ts";

// Rows are found by primary key (see complete.ts for the COLLATE "C").
// One statement per batch: each failed attempt is retried after its delay, or fails for good
// when it was the last attempt or the error was permanent. Every attempt leaves an event with
// its error; retries say when they will run. Guarded like completion.
const FAIL_JOBS = statement(
  "fail_jobs",
  `WITH f AS (
     SELECT * FROM unnest($1::bigint[], $2::integer[], $3::jsonb[], $4::bigint[], $5::boolean[])
       AS f(id, attempt, error, delay_ms, permanent)
   ), updated AS (
     UPDATE {{schema}}.jobs j
     SET status = CASE WHEN f.permanent OR j.attempts >= j.max_attempts THEN 'failed' ELSE 'retrying' END,
         run_at = CASE WHEN f.permanent OR j.attempts >= j.max_attempts THEN j.run_at
                       ELSE now() + f.delay_ms * interval '1 millisecond' END,
         finished_at = CASE WHEN f.permanent OR j.attempts >= j.max_attempts THEN now() END,
         last_error = f.error,
         lease_expires_at = NULL,
         updated_at = now()
     FROM f
     WHERE j.id = f.id AND j.status COLLATE "C" = 'running' AND j.lease_owner = $6 AND j.attempts = f.attempt
     RETURNING j.id, j.queue, j.status, j.attempts, j.run_at, j.started_at
   ), events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data)
     SELECT u.id, 'attempt_failed', u.attempts, $6, f.error->>'message',
            jsonb_build_object('error', f.error, 'startedAt', u.started_at)
     FROM updated u JOIN f ON f.id = u.id
     UNION ALL
     SELECT u.id, CASE u.status WHEN 'failed' THEN 'failed' ELSE 'retry_scheduled' END, u.attempts, $6,
            CASE u.status WHEN 'failed' THEN
              CASE WHEN f.permanent THEN 'failed permanently' ELSE 'out of attempts' END
            ELSE 'retry at ' || to_char(u.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') END,
            CASE u.status WHEN 'failed' THEN NULL ELSE jsonb_build_object('runAt', u.run_at, 'delayMs', f.delay_ms) END
     FROM updated u JOIN f ON f.id = u.id
     UNION ALL
     SELECT f.id, 'outcome_ignored', f.attempt, $6,
            'failure of attempt ' || f.attempt || ' ignored: the worker no longer held the job',
            NULL::jsonb
     FROM f WHERE f.id NOT IN (SELECT id FROM updated)
   )
   SELECT id, queue, status, run_at FROM updated`,
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
  status: "retrying" | "failed";
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
    status: "retrying" | "failed";
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
