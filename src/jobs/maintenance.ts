import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { CURRENT_SLOT, moveToHistory, releaseJobKeys, releaseSlots } from "./history.ts";

// Maintenance of the fleet, one statement per step. Each step that must run in one process at a
// time takes a transaction-level advisory lock inside its own statement: the lock lives exactly as
// long as the statement, so a worker frozen or cut off between steps holds nothing, and one frozen
// mid-statement holds it only until the server finishes the statement (the server does not wait
// for the client). A busy lock means another process is on it. Steps never depend on each other
// having run: a failing step is logged and the others go on (src/worker/maintenance.ts).

function tryLock(name: string): string {
  return `SELECT pg_try_advisory_xact_lock(hashtext({{channel}}), hashtext('${name}')) AS ok`;
}

// A worker whose lease ran out is marked reaped: it can claim no more. Claims check the mark
// holding FOR KEY SHARE on the row; the rows are taken FOR UPDATE first, so this waits for a claim
// in flight and the next step sees the jobs it took (and a heartbeat that came meanwhile saves its
// worker: the lease is checked again on the row as it is then). Its wake-up tokens go with it.
const MARK_EXPIRED_WORKERS = statement(
  "mark_expired_workers",
  `WITH lock AS MATERIALIZED (${tryLock("reap")}),
   expired AS MATERIALIZED (
     SELECT w.id FROM {{schema}}.workers w, lock
     WHERE lock.ok AND w.reaped_at IS NULL AND w.lease_expires_at < now()
     ORDER BY w.id
     FOR UPDATE OF w
   ), marked AS (
     UPDATE {{schema}}.workers w SET reaped_at = now()
     FROM expired e
     WHERE w.id = e.id AND w.reaped_at IS NULL AND w.lease_expires_at < now()
     RETURNING w.id
   ), tokens AS (
     DELETE FROM {{schema}}.waiters t WHERE t.worker_id IN (SELECT id FROM marked)
   )
   SELECT (SELECT count(*)::integer FROM marked) AS marked,
          EXISTS (SELECT 1 FROM {{schema}}.workers WHERE reaped_at IS NOT NULL) AS pending`,
);

// The jobs of reaped workers (or, with $1, of workers that have no row at all: a safety net run
// rarely, as it reads every running job) go back to the queue at their old place (their
// ready_seq), or fail when that was their last attempt, with an event naming the lost worker.
// The reaped workers' rows go in the same statement. Waiting workers are woken to sweep: the jobs
// sit behind their cursors.
const REAP_JOBS = statement(
  "reap_jobs",
  `WITH lock AS MATERIALIZED (${tryLock("reap")}),
   gone AS MATERIALIZED (
     SELECT w.id FROM {{schema}}.workers w, lock
     WHERE lock.ok AND w.reaped_at IS NOT NULL
     FOR UPDATE OF w
   ), victims AS MATERIALIZED (
     SELECT j.id, j.attempts >= j.max_attempts AS final, j.queue, j.concurrency_key, j.held_slot
     FROM {{schema}}.jobs j, lock
     WHERE lock.ok AND j.status = 'running'
       AND (j.lease_owner IN (SELECT id FROM gone)
            OR ($1 AND NOT EXISTS (SELECT 1 FROM {{schema}}.workers x WHERE x.id = j.lease_owner)))
     FOR UPDATE OF j
   ), retried AS (
     UPDATE {{schema}}.jobs j
     SET status = 'pending',
         last_error = jsonb_build_object(
           'name', 'LeaseExpired', 'code', 'LEASE_EXPIRED', 'worker', j.lease_owner,
           'message', 'lease expired: worker ' || j.lease_owner || ' stopped heartbeating during attempt ' || j.attempts),
         held_slot = false,
         updated_at = now()
     FROM victims v
     WHERE j.id = v.id AND NOT v.final
     RETURNING j.id, j.queue, j.attempts, j.lease_owner, j.started_at
   ), failed AS (
     DELETE FROM {{schema}}.jobs j USING victims v
     WHERE j.id = v.id AND v.final
     RETURNING j.*, 'failed'::text AS outcome_status, NULL::jsonb AS outcome_result,
               jsonb_build_object(
                 'name', 'LeaseExpired', 'code', 'LEASE_EXPIRED', 'worker', j.lease_owner,
                 'message', 'lease expired: worker ' || j.lease_owner || ' stopped heartbeating during attempt ' || j.attempts)
                 AS outcome_error
   ), slot AS MATERIALIZED (${CURRENT_SLOT}),
   moved AS (${moveToHistory("failed", "slot")}),
   -- The slots their cancelled jobs still held (handlers that had not returned) go too.
   holds AS MATERIALIZED (
     DELETE FROM {{schema}}.slot_holds h WHERE h.worker_id IN (SELECT id FROM gone)
     RETURNING h.queue, h.concurrency_key, true AS held_slot
   ),
   ${releaseSlots(
     `(SELECT queue, concurrency_key, held_slot FROM victims
       UNION ALL SELECT queue, concurrency_key, held_slot FROM holds)`,
   )},
   ${releaseJobKeys("failed")},
   events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data, slot)
     SELECT u.id, 'lease_expired', u.attempts, u.lease_owner,
            'lease expired: worker ' || u.lease_owner || ' stopped heartbeating',
            jsonb_build_object('lostWorker', u.lease_owner, 'startedAt', u.started_at), slot.s
     FROM (SELECT id, attempts, lease_owner, started_at FROM retried
           UNION ALL SELECT id, attempts, lease_owner, started_at FROM failed) u, slot
     UNION ALL
     SELECT r.id, 'retry_scheduled', r.attempts, NULL, 'retry now', NULL, slot.s FROM retried r, slot
     UNION ALL
     SELECT x.id, 'failed', x.attempts, NULL, 'out of attempts', NULL, slot.s FROM failed x, slot
   ), removed AS (
     DELETE FROM {{schema}}.workers w WHERE w.id IN (SELECT id FROM gone)
   ), woken AS (
     SELECT {{schema}}.wake_queues(array_agg(DISTINCT queue))
     FROM (SELECT queue FROM retried UNION ALL SELECT queue FROM holds) q
   ), counted AS (
     SELECT {{schema}}.count_minute(c.queue, failed => c.failed, retried => c.retried)
     FROM (SELECT queue, count(*) FILTER (WHERE final) AS failed,
                  count(*) FILTER (WHERE NOT final) AS retried
           FROM (SELECT queue, false AS final FROM retried
                 UNION ALL SELECT queue, true FROM failed) u
           GROUP BY queue) c
   )
   SELECT (SELECT count(*)::integer FROM retried) + (SELECT count(*)::integer FROM failed) AS reaped,
          (SELECT count(*)::integer FROM gone) AS workers,
          (SELECT count(*) FROM counted) AS counted,
          (SELECT ok FROM lock) AS locked
   FROM woken`,
);

// Tokens of workers that are gone (no live row, or their listener's backend is gone) wake nobody;
// then the "somebody waits" flag is lowered if no token is left.
const CLEAN_WAITERS = statement(
  "clean_waiters",
  `WITH gone AS (
     DELETE FROM {{schema}}.waiters t
     WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.workers w WHERE w.id = t.worker_id AND w.reaped_at IS NULL)
        OR (t.listener_pid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(t.listener_pid)))
     RETURNING 1
   )
   SELECT (SELECT count(*)::integer FROM gone) AS removed, {{schema}}.lower_waiting()`,
);

const ROTATE_HISTORY = statement(
  "rotate_history",
  "SELECT emptied, slot_ms FROM {{schema}}.rotate_history($1::bigint)",
);

// Keys older than the retention period whose job is no longer live are released, oldest first
// from a cursor (so released keys' dead entries are not read again), a bounded batch at a time.
const RELEASE_KEYS = statement(
  "release_keys",
  `WITH lock AS MATERIALIZED (${tryLock("keys")}),
   doomed AS (
     SELECT k.queue, k.key, k.created_at FROM {{schema}}.job_keys k, lock
     WHERE lock.ok AND k.created_at >= $2::timestamptz
       AND k.created_at < now() - $1::bigint * interval '1 millisecond'
       AND NOT EXISTS (SELECT 1 FROM {{schema}}.jobs j WHERE j.id = k.job_id)
     ORDER BY k.created_at
     LIMIT $3
   ), released AS (
     DELETE FROM {{schema}}.job_keys k USING doomed d
     WHERE k.queue = d.queue AND k.key = d.key
     RETURNING k.created_at
   )
   SELECT (SELECT count(*)::integer FROM released) AS released,
          (SELECT max(created_at)::text FROM doomed) AS up_to`,
);

export interface ReapResult {
  /** Workers newly found with an expired lease. */
  expiredWorkers: number;
  /** Jobs taken back from them. */
  reaped: number;
}

/** Marks workers whose lease expired and takes their jobs back. */
export async function reapExpiredWorkers(
  db: Queryable,
  sql: SchemaSql,
  options: { orphans?: boolean } = {},
): Promise<ReapResult> {
  const mark = await db.query<{ marked: number; pending: boolean }>(sql.bind(MARK_EXPIRED_WORKERS));
  // `pending` cannot see the rows this statement marked (one snapshot): count them too.
  const { marked, pending } = mark.rows[0]!;
  if (marked === 0 && !pending && !options.orphans) return { expiredWorkers: 0, reaped: 0 };
  // The process that marked workers takes their jobs back: if another pass holds the lock for a
  // statement just now (one that read the marks before they were committed may not reap them),
  // it tries again a moment later instead of leaving them to the next pass.
  for (let attempt = 0; ; attempt++) {
    const { rows } = await db.query<{ reaped: number; workers: number; locked: boolean }>({
      ...sql.bind(REAP_JOBS),
      values: [options.orphans ?? false],
    });
    const row = rows[0];
    if (row?.locked || marked === 0 || attempt >= 5) {
      return { expiredWorkers: marked, reaped: row?.reaped ?? 0 };
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Removes wake-up tokens nobody will act on and lowers the flag when none is left. */
export async function cleanWaiters(db: Queryable, sql: SchemaSql): Promise<number> {
  const { rows } = await db.query<{ removed: number }>(sql.bind(CLEAN_WAITERS));
  return rows[0]?.removed ?? 0;
}

/**
 * Drops history and events older than `retentionMs` a slot at a time (null keeps everything).
 * Returns the slots emptied and the slot width now in force (the caller runs this about twice
 * per slot width).
 */
export async function rotateHistory(
  db: Queryable,
  sql: SchemaSql,
  retentionMs: number | null,
): Promise<{ emptied: number; slotMs: number | null }> {
  const { rows } = await db.query<{ emptied: number; slot_ms: number | null }>({
    ...sql.bind(ROTATE_HISTORY),
    values: [retentionMs],
  });
  return { emptied: rows[0]?.emptied ?? 0, slotMs: rows[0]?.slot_ms ?? null };
}

/** Releases idempotency keys past retention; returns how many and the cursor to go on from. */
export async function releaseKeys(
  db: Queryable,
  sql: SchemaSql,
  options: { retentionMs: number; after: Date; limit: number },
): Promise<{ released: number; upTo: Date | null }> {
  const { rows } = await db.query<{ released: number; up_to: string | null }>({
    ...sql.bind(RELEASE_KEYS),
    values: [options.retentionMs, options.after.toISOString(), options.limit],
  });
  const row = rows[0]!;
  return { released: row.released, upTo: row.up_to === null ? null : new Date(row.up_to) };
}
