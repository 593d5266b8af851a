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
      finished_at, updated_at, concurrency_key, slot)
   SELECT m.id, m.queue, m.task, m.payload, m.outcome_status, m.priority, m.run_at, m.attempts,
          m.max_attempts, m.timeout_ms, m.idempotency_key, m.request_id, m.lease_owner,
          m.outcome_result, coalesce(m.outcome_error, m.last_error), m.created_at, m.started_at,
          now(), now(), m.concurrency_key, ${slot}.s
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
  NULL::timestamptz AS finished_at, j.updated_at, j.concurrency_key`;

export const FINISHED_JOB = `h.id, h.queue, h.task, h.payload, h.status, h.priority, h.run_at,
  h.attempts, h.max_attempts, h.timeout_ms, h.idempotency_key, h.request_id, h.lease_owner,
  NULL::timestamptz AS lease_expires_at, h.result, h.last_error, h.created_at, h.started_at,
  h.finished_at, h.updated_at, h.concurrency_key`;

/** A CTE body giving the history slot of now, computed once per statement. */
export const CURRENT_SLOT = "SELECT {{schema}}.history_slot(now()) AS s";

/**
 * CTEs (named with `prefix`) that release what runs ending in `source` held: the slots of jobs
 * claimed under a limit (`held_slot`: the queue's and its key's counters go down). Key rows are
 * locked in (queue, key) order first, then the queues' rows in name order: two such statements
 * never deadlock; claims (which hold a queue's row) skip locked key rows, and the recount of
 * maintenance takes one queue at a time and skips them too. `source` must have `queue`, `concurrency_key` and `held_slot`.
 */
export function releaseSlots(source: string, prefix = "slots"): string {
  return `${prefix} AS MATERIALIZED (
     SELECT src.queue, src.concurrency_key FROM ${source} src WHERE src.held_slot
   ), ${prefix}_keys AS MATERIALIZED (
     SELECT c.queue, c.key FROM {{schema}}.queue_keys c
     WHERE (c.queue, c.key) IN (SELECT queue, concurrency_key FROM ${prefix})
     ORDER BY c.queue, c.key
     FOR UPDATE OF c
   ), ${prefix}_keys_down AS (
     UPDATE {{schema}}.queue_keys c SET running = greatest(0, c.running - d.n)
     FROM (SELECT s.queue, s.concurrency_key AS key, count(*)::integer AS n FROM ${prefix} s
           WHERE (s.queue, s.concurrency_key) IN (SELECT queue, key FROM ${prefix}_keys)
           GROUP BY 1, 2) d
     WHERE c.queue = d.queue AND c.key = d.key
   ), ${prefix}_keys_done AS MATERIALIZED (
     SELECT count(*) FROM ${prefix}_keys
   ), ${prefix}_queue_rows AS MATERIALIZED (
     -- the queues' rows in name order, after their keys' (as every statement that ends runs)
     SELECT q.name FROM {{schema}}.queues q
     WHERE q.name IN (SELECT queue FROM ${prefix}) AND EXISTS (SELECT 1 FROM ${prefix}_keys_done)
     ORDER BY q.name
     FOR UPDATE OF q
   ), ${prefix}_queues_down AS (
     UPDATE {{schema}}.queues q SET running = greatest(0, q.running - d.n)
     FROM (SELECT queue, count(*)::integer AS n FROM ${prefix} GROUP BY 1) d
     WHERE q.name = d.queue AND q.name IN (SELECT name FROM ${prefix}_queue_rows)
   )`;
}

/**
 * A CTE (named `name`) that releases the idempotency keys reserved only while their job is not
 * finished (`key_mode` 'active' or 'debounce') for the jobs in `source` (with `id`, `key_mode`).
 */
export function releaseJobKeys(source: string, name = "released_keys"): string {
  return `${name} AS (
     DELETE FROM {{schema}}.job_keys k
     WHERE k.mode IS NOT NULL
       AND k.job_id IN (SELECT src.id FROM ${source} src WHERE src.key_mode IS NOT NULL)
   )`;
}

/**
 * CTEs that bring failed and cancelled jobs back from history (`picked`: `id`, `queue`,
 * `idempotency_key`), pending now with a fresh attempt budget and a fresh ready_seq, shared by the
 * retry of jobs by id and the bulk retry. Named `blocked` (jobs whose idempotency key another live
 * job holds: not retried), `back`, `reserved`, `revived` (the new rows), `revived_keys`, `events`
 * (data: `eventData`) and `woken`. A key released when the job finished is reserved again in mode
 * 'active'; in a queue served per key a job without a key gets ''.
 */
export function reviveFromHistory(picked: string, eventData: string): string {
  return `blocked AS MATERIALIZED (
     SELECT p.id FROM ${picked} p
     JOIN {{schema}}.job_keys k ON k.queue = p.queue AND k.key = p.idempotency_key
     WHERE k.job_id <> p.id AND EXISTS (SELECT 1 FROM {{schema}}.jobs j WHERE j.id = k.job_id)
   ), back AS (
     DELETE FROM {{schema}}.job_history h
     WHERE h.id IN (SELECT p.id FROM ${picked} p WHERE p.id NOT IN (SELECT id FROM blocked))
       AND h.status IN ('failed', 'cancelled')
     RETURNING h.*
   ), reserved AS (
     INSERT INTO {{schema}}.job_keys AS k (queue, key, job_id, mode)
     SELECT b.queue, b.idempotency_key, b.id, 'active' FROM back b
     WHERE b.idempotency_key IS NOT NULL
     ORDER BY 1, 2
     ON CONFLICT (queue, key) DO NOTHING
     RETURNING k.job_id
   ), revived AS (
     INSERT INTO {{schema}}.jobs AS j
       (id, queue, task, payload, status, priority, run_at, attempts, max_attempts, timeout_ms,
        idempotency_key, request_id, last_error, created_at, updated_at, ready_seq,
        concurrency_key, key_mode)
     OVERRIDING SYSTEM VALUE
     SELECT b.id, b.queue, b.task, b.payload, 'pending', b.priority, now(), 0, b.max_attempts,
            b.timeout_ms, b.idempotency_key, b.request_id, b.last_error, b.created_at, now(),
            nextval('{{schema}}.jobs_id_seq'::regclass),
            coalesce(b.concurrency_key,
                     CASE WHEN q.name IS NOT NULL AND {{schema}}.queue_is_keyed(q) THEN '' END),
            CASE WHEN b.id IN (SELECT r.job_id FROM reserved r) THEN 'active' END
     FROM back b LEFT JOIN {{schema}}.queues q ON q.name = b.queue
     ORDER BY b.id
     RETURNING j.*
   ), revived_keys AS (
     INSERT INTO {{schema}}.queue_keys (queue, key)
     SELECT DISTINCT r.queue, r.concurrency_key FROM revived r WHERE r.concurrency_key IS NOT NULL
     ORDER BY 1, 2
     ON CONFLICT (queue, key) DO NOTHING
   ), events AS (
     INSERT INTO {{schema}}.job_events (job_id, kind, message, data, slot)
     SELECT r.id, 'retried', 'sent back to the queue with a fresh attempt budget',
            ${eventData}, {{schema}}.history_slot(now())
     FROM revived r
   ), woken AS (
     SELECT {{schema}}.wake(coalesce(jsonb_object_agg(q.queue, jsonb_build_object('n', q.n, 't', q.tasks)), '{}'::jsonb))
     FROM (SELECT r.queue, count(*) AS n, jsonb_agg(DISTINCT r.task) AS tasks
           FROM revived r GROUP BY r.queue) q
     WHERE pg_sequence_last_value('{{schema}}.waiting'::regclass) > 0
   )`;
}
