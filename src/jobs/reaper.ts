import type pg from "pg";
import { type SchemaSql, statement } from "../db/sql.ts";

const TRY_LOCK = statement(
  "reaper_lock",
  "SELECT pg_try_advisory_xact_lock(hashtext({{channel}}), hashtext('reaper')) AS locked",
);

// Jobs whose worker stopped heartbeating go back to the queue at their old place (run_at kept,
// so they go before the backlog that came after them) (or fail when that was their last
// attempt), with an event naming the worker that lost them. Waiting workers are woken.
const REAP_EXPIRED_LEASES = statement(
  "reap_expired_leases",
  `WITH expired AS (
     SELECT id FROM {{schema}}.jobs
     WHERE status = 'running' AND lease_expires_at < now()
     ORDER BY lease_expires_at
     LIMIT $1
     FOR UPDATE SKIP LOCKED
   ), updated AS (
     UPDATE {{schema}}.jobs j
     SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'retrying' END,
         finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
         last_error = jsonb_build_object(
           'name', 'LeaseExpired', 'code', 'LEASE_EXPIRED', 'worker', j.lease_owner,
           'message', 'lease expired: worker ' || j.lease_owner || ' stopped heartbeating during attempt ' || j.attempts),
         lease_expires_at = NULL,
         updated_at = now()
     FROM expired
     WHERE j.id = expired.id
     RETURNING j.id, j.queue, j.status, j.attempts, j.lease_owner, j.started_at
   ), events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data)
     SELECT id, 'lease_expired', attempts, lease_owner,
            'lease expired: worker ' || lease_owner || ' stopped heartbeating',
            jsonb_build_object('lostWorker', lease_owner, 'startedAt', started_at)
     FROM updated
     UNION ALL
     SELECT id, CASE status WHEN 'failed' THEN 'failed' ELSE 'retry_scheduled' END, attempts, NULL,
            CASE status WHEN 'failed' THEN 'out of attempts' ELSE 'retry now' END, NULL
     FROM updated
   ), woken AS (
     SELECT {{schema}}.wake(array_agg(DISTINCT queue)) FROM updated WHERE status = 'retrying'
   )
   SELECT count(*)::integer AS reaped FROM updated, woken`,
);

const REMOVE_STALE_WORKERS = statement(
  "remove_stale_workers",
  `WITH stale AS (
     DELETE FROM {{schema}}.workers WHERE last_seen_at < now() - $1::integer * interval '1 millisecond'
     RETURNING id
   ), waiting AS (
     DELETE FROM {{schema}}.waiters w
     WHERE w.worker_id IN (SELECT id FROM stale)
        OR NOT EXISTS (SELECT 1 FROM {{schema}}.workers x WHERE x.id = w.worker_id)
          AND w.since < now() - $1::integer * interval '1 millisecond'
   )
   SELECT count(*)::integer AS removed FROM stale`,
);

// Lowers the "somebody waits" flag when the tokens are gone (crashed workers, stale rows).
const RESET_WAITING = statement(
  "maintenance_reset_waiting",
  "SELECT {{schema}}.reset_waiting(NULL)",
);

const PRUNE_JOBS = statement(
  "prune_jobs",
  `WITH doomed AS (
     SELECT id FROM {{schema}}.jobs
     WHERE status IN ('completed', 'failed', 'cancelled')
       AND finished_at < now() - $1::bigint * interval '1 millisecond'
     ORDER BY finished_at
     LIMIT $2
   ), deleted AS (
     DELETE FROM {{schema}}.jobs j USING doomed WHERE j.id = doomed.id RETURNING j.id
   ), events AS (
     DELETE FROM {{schema}}.job_events e USING deleted WHERE e.job_id = deleted.id
   )
   SELECT count(*)::integer AS pruned FROM deleted`,
);

export interface MaintenanceOptions {
  /** Reap at most this many expired leases per run. */
  reapBatch: number;
  /** A worker unseen for this long is gone. */
  staleWorkerMs: number;
  /** Terminal jobs older than this are deleted; null keeps them forever. */
  retentionMs: number | null;
  /** Delete at most this many jobs per run, so a large backlog never holds long locks. */
  pruneBatch: number;
}

export interface MaintenanceResult {
  /** False when another process was running maintenance: this call did nothing. */
  ran: boolean;
  reaped: number;
  staleWorkers: number;
  pruned: number;
}

/**
 * One maintenance pass, in one transaction and in one process at a time across the fleet
 * (a transaction-level advisory lock; a busy lock means somebody else is on it).
 */
export async function runMaintenance(
  pool: pg.Pool,
  sql: SchemaSql,
  options: MaintenanceOptions,
): Promise<MaintenanceResult> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    try {
      const lock = await client.query<{ locked: boolean }>(sql.bind(TRY_LOCK));
      if (!lock.rows[0]?.locked) {
        await client.query("ROLLBACK");
        return { ran: false, reaped: 0, staleWorkers: 0, pruned: 0 };
      }
      const reap = await client.query<{ reaped: number }>({
        ...sql.bind(REAP_EXPIRED_LEASES),
        values: [options.reapBatch],
      });
      const stale = await client.query<{ removed: number }>({
        ...sql.bind(REMOVE_STALE_WORKERS),
        values: [options.staleWorkerMs],
      });
      await client.query(sql.bind(RESET_WAITING));
      let pruned = 0;
      if (options.retentionMs !== null) {
        const prune = await client.query<{ pruned: number }>({
          ...sql.bind(PRUNE_JOBS),
          values: [options.retentionMs, options.pruneBatch],
        });
        pruned = prune.rows[0]?.pruned ?? 0;
      }
      await client.query("COMMIT");
      return {
        ran: true,
        reaped: reap.rows[0]?.reaped ?? 0,
        staleWorkers: stale.rows[0]?.removed ?? 0,
        pruned,
      };
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    }
  } finally {
    client.release();
  }
}
