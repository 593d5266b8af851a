import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";

// `COLLATE "C"` keeps the planner from proving the partial lease index usable: that index holds
// an entry for every running job (and, between vacuums, every one that ran), and a plan through it
// joins all of them to the batch. This way each row is found by its primary key.
// Guarded by state, owner and attempt: a worker whose lease expired (and whose job another
// worker may hold now) cannot complete it. Its late outcome is recorded as an event instead.
// The commit does not wait for the WAL to reach the disk (`synchronous_commit` off for this
// transaction only). Should the database crash in the fraction of a second before the WAL
// writer flushes it, the job is back to `running` under its old lease, and runs again when the
// lease expires: the at-least-once path every lost outcome takes, recorded as a lease expiry.
// Claims and heartbeats stay synchronous: losing one of those could let two workers run a job
// at once. Waiting for the disk here made every completion batch a flush of its own, and those
// flushes delayed the submissions that must wait for theirs.
const COMPLETE_JOBS = statement(
  "complete_jobs",
  `WITH relaxed AS MATERIALIZED (
     SELECT set_config('synchronous_commit', 'off', true)
   ), done AS (
     SELECT d.* FROM relaxed, unnest($1::bigint[], $2::integer[], $3::jsonb[]) AS d(id, attempt, result)
   ), updated AS (
     UPDATE {{schema}}.jobs j
     SET status = 'completed', result = done.result, finished_at = now(),
         lease_expires_at = NULL, updated_at = now()
     FROM done
     WHERE j.id = done.id AND j.status COLLATE "C" = 'running' AND j.lease_owner = $4 AND j.attempts = done.attempt
     RETURNING j.id
   ), ignored AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message)
     SELECT done.id, 'outcome_ignored', done.attempt, $4,
            'completion of attempt ' || done.attempt || ' ignored: the worker no longer held the job'
     FROM done WHERE done.id NOT IN (SELECT id FROM updated)
   )
   SELECT id FROM updated`,
);

export interface Completion {
  id: number;
  attempt: number;
  result: unknown;
}

/** Completes a batch of jobs held by `workerId`; returns the ids that were still held. */
export async function completeJobs(
  db: Queryable,
  sql: SchemaSql,
  workerId: string,
  completions: readonly Completion[],
): Promise<Set<number>> {
  const { rows } = await db.query<{ id: number }>({
    ...sql.bind(COMPLETE_JOBS),
    values: [
      completions.map((c) => c.id),
      completions.map((c) => c.attempt),
      completions.map((c) => JSON.stringify(c.result ?? null)),
      workerId,
    ],
  });
  return new Set(rows.map((r) => r.id));
}
