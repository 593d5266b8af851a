import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";
import { type ScheduleRun, type ScheduleRunRow, toScheduleRun } from "../types.ts";

// A job now, with the schedule's task, payload and options, recorded as a manual run. It ignores
// pause and overlap (a person asked for it) and becomes the schedule's latest job, so an overlap
// `skip` schedule waits for it. With a key, a repeated request returns the first request's job.
const TRIGGER_SCHEDULE = statement(
  "schedules_trigger",
  `WITH target AS (
     SELECT s.* FROM {{schema}}.schedules s WHERE s.name = $1 FOR NO KEY UPDATE
   ), made AS (
     SELECT (m.job).id AS job_id, m.duplicate
     FROM {{schema}}.enqueue_many((
       SELECT coalesce(jsonb_agg(jsonb_build_object(
                'task', t.task, 'payload', t.payload, 'queue', t.queue, 'priority', t.priority,
                'max_attempts', t.max_attempts, 'timeout_ms', t.timeout_ms,
                'concurrency_key', t.concurrency_key,
                'idempotency_key', CASE WHEN $2::text IS NOT NULL
                                        THEN 'schedule:' || t.name || ':manual:' || $2::text END)),
              '[]'::jsonb)
       FROM target t)) m
   ), run AS (
     INSERT INTO {{schema}}.schedule_runs
       (schedule_name, tick_at, trigger, outcome, last_tick_at, job_id, late_ms)
     SELECT t.name, now(), 'manual', 'fired', now(), m.job_id, 0
     FROM target t, made m WHERE NOT m.duplicate
     RETURNING *
   ), updated AS (
     UPDATE {{schema}}.schedules s SET last_job_id = m.job_id
     FROM made m WHERE s.name = $1 AND NOT m.duplicate
   )
   SELECT m.job_id AS made_job_id, m.duplicate AS made_duplicate, r.*
   FROM made m LEFT JOIN run r ON true`,
);

export interface TriggeredRun {
  jobId: number;
  /** True when the key was used before: the job is that request's, and no new run was recorded. */
  duplicate: boolean;
  run: ScheduleRun | null;
}

/** Makes a schedule's job now; null when there is no such schedule. */
export async function triggerScheduleRow(
  db: Queryable,
  sql: SchemaSql,
  name: string,
  idempotencyKey?: string,
): Promise<TriggeredRun | null> {
  const { rows } = await db.query<
    Omit<ScheduleRunRow, "id"> & {
      made_job_id: string | number;
      made_duplicate: boolean;
      id: string | number | null;
    }
  >({ ...sql.bind(TRIGGER_SCHEDULE), values: [name, idempotencyKey ?? null] });
  const row = rows[0];
  if (!row) return null;
  return {
    jobId: Number(row.made_job_id),
    duplicate: row.made_duplicate,
    run: row.id === null ? null : toScheduleRun(row as ScheduleRunRow),
  };
}
