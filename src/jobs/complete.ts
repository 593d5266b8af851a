import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { CURRENT_SLOT, moveToHistory, releaseJobKeys, releaseSlots } from "./history.ts";

// A completed job leaves `jobs` for `job_history` in the statement that completes it: one delete
// and one insert into the current history slot, no update left for vacuum, no index entry in
// `jobs` beyond the dead one the delete leaves. Rows are found by primary key.
// Guarded by state, owner and attempt: a worker whose lease expired (and whose job another
// worker may hold now) cannot complete it. Its late outcome is recorded as an event instead.
// The commit does not wait for the WAL to reach the disk (`synchronous_commit` off for this
// transaction only). Should the database crash in the fraction of a second before the WAL
// writer flushes it, the job is back to `running` under its old lease, and runs again when the
// lease expires: the at-least-once path every lost outcome takes, recorded as a lease expiry.
// Claims and heartbeats stay synchronous: losing one of those could let two workers run a job
// at once.
const COMPLETE_JOBS = statement(
  "complete_jobs",
  `WITH relaxed AS MATERIALIZED (
     SELECT set_config('synchronous_commit', 'off', true)
   ), input AS (
     SELECT d.* FROM relaxed, unnest($1::bigint[], $2::integer[], $3::jsonb[]) AS d(id, attempt, result)
   ), done AS (
     DELETE FROM {{schema}}.jobs j USING input d
     WHERE j.id = d.id AND j.status = 'running' AND j.lease_owner = $4 AND j.attempts = d.attempt
     RETURNING j.*, 'completed'::text AS outcome_status, d.result AS outcome_result,
               NULL::jsonb AS outcome_error
   ), slot AS MATERIALIZED (${CURRENT_SLOT}),
   moved AS (${moveToHistory("done", "slot")}),
   ${releaseSlots("done")},
   ${releaseJobKeys("done")},
   ignored AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, slot)
     SELECT d.id, 'outcome_ignored', d.attempt, $4,
            'completion of attempt ' || d.attempt || ' ignored: the worker no longer held the job',
            slot.s
     FROM input d, slot WHERE d.id NOT IN (SELECT id FROM done)
   )
   SELECT id FROM done`,
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
