/**
 * The SQL that moves a finished job from `jobs` to `job_history`, shared by every statement that
 * finishes jobs (complete, fail, cancel, reap) so the column list is written once. `source` is a
 * CTE holding deleted `jobs` rows plus `outcome_status`, `outcome_result` and `outcome_error`;
 * `slot` a CTE with the current history slot `s`. SQL text only: values always go as parameters.
 */
export function moveToHistory(source: string, slot: string, returning = false): string {
  return `INSERT INTO {{schema}}.job_history
     (id, queue, task, payload, status, priority, run_at, attempts, max_attempts, timeout_ms,
      idempotency_key, request_id, lease_owner, result, last_error, created_at, started_at,
      finished_at, updated_at, slot)
   SELECT m.id, m.queue, m.task, m.payload, m.outcome_status, m.priority, m.run_at, m.attempts,
          m.max_attempts, m.timeout_ms, m.idempotency_key, m.request_id, m.lease_owner,
          m.outcome_result, coalesce(m.outcome_error, m.last_error), m.created_at, m.started_at,
          now(), now(), ${slot}.s
   FROM ${source} m, ${slot}${
     returning
       ? `
   RETURNING *`
       : ""
   }`;
}

/**
 * Columns of a job read from either table, in the shape of `JobRow`: `LIVE_JOB` for an alias `j`
 * of `jobs` (with the holding worker's lease from an alias `w` of `workers`, joined by the
 * reader), `FINISHED_JOB` for an alias `h` of `job_history`.
 */
export const LIVE_JOB = `j.id, j.queue, j.task, j.payload, j.status, j.priority, j.run_at, j.attempts,
  j.max_attempts, j.timeout_ms, j.idempotency_key, j.request_id, j.lease_owner,
  CASE WHEN j.status = 'running' THEN w.lease_expires_at END AS lease_expires_at,
  NULL::jsonb AS result, j.last_error, j.created_at, j.started_at,
  NULL::timestamptz AS finished_at, j.updated_at`;

export const FINISHED_JOB = `h.id, h.queue, h.task, h.payload, h.status, h.priority, h.run_at,
  h.attempts, h.max_attempts, h.timeout_ms, h.idempotency_key, h.request_id, h.lease_owner,
  NULL::timestamptz AS lease_expires_at, h.result, h.last_error, h.created_at, h.started_at,
  h.finished_at, h.updated_at`;

/** A CTE body giving the history slot of now, computed once per statement. */
export const CURRENT_SLOT = "SELECT {{schema}}.history_slot(now()) AS s";
