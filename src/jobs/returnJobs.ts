import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { releaseSlots } from "./history.ts";

// Hands jobs back untouched, as if never claimed: the attempt is given back, so a shutdown does
// not burn a job's retries, and the job keeps its place (its ready_seq): it goes before the
// backlog that came after it. That place is behind the cursors of the workers that claimed past
// it, so the waiting workers are woken to sweep. Guarded like completion.
const RETURN_JOBS = statement(
  "return_jobs",
  `WITH r AS (
     SELECT * FROM unnest($1::bigint[], $2::integer[]) AS r(id, attempt)
   ), held AS MATERIALIZED (
     -- What the returned rows held before this statement (RETURNING gives the new values).
     SELECT j.id, j.queue, j.concurrency_key, j.held_slot FROM {{schema}}.jobs j
     WHERE j.id = ANY ($1::bigint[]) AND j.held_slot
   ), updated AS (
     UPDATE {{schema}}.jobs j
     SET status = 'pending', attempts = j.attempts - 1, held_slot = false, updated_at = now()
     FROM r
     WHERE j.id = r.id AND j.status = 'running' AND j.lease_owner = $3 AND j.attempts = r.attempt
     RETURNING j.id, j.queue, j.started_at
   ), ended AS (
     SELECT h.queue, h.concurrency_key, h.held_slot FROM held h WHERE h.id IN (SELECT id FROM updated)
   ), ${releaseSlots("ended")},
   events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data, slot)
     SELECT u.id, 'returned', r.attempt, $3, $4, jsonb_build_object('startedAt', u.started_at),
            {{schema}}.history_slot(now())
     FROM updated u JOIN r ON r.id = u.id
   ), woken AS (
     SELECT {{schema}}.wake_queues(array_agg(DISTINCT queue)) FROM updated
   )
   SELECT u.id FROM updated u, woken`,
);

/** Returns jobs the worker holds to the queue without counting the attempt. */
export async function returnJobs(
  db: Queryable,
  sql: SchemaSql,
  workerId: string,
  jobs: readonly { id: number; attempt: number }[],
  reason: string,
): Promise<number[]> {
  if (jobs.length === 0) return [];
  const { rows } = await db.query<{ id: number }>({
    ...sql.bind(RETURN_JOBS),
    values: [jobs.map((j) => j.id), jobs.map((j) => j.attempt), workerId, reason],
  });
  return rows.map((r) => r.id);
}
