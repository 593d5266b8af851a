import type pg from "pg";
import { withClient } from "../db/pool.ts";
import { type SchemaSql, type Statement, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { cancelJobs } from "./control.ts";
import { reviveFromHistory } from "./history.ts";
import { type JobStatus, LIVE_STATUSES, TERMINAL_STATUSES } from "./types.ts";

// Bulk actions: retry, cancel or delete every job matching a filter, in bounded batches.
//
// Each batch is one short statement (cancel: one short transaction) over a window of at most
// `batchSize` candidate rows taken in index order after a cursor; the filter is applied to the
// window, never inside the LIMIT, so a filter that matches little still reads no more than one
// window per statement. Where the candidates are walked:
// - failed and cancelled jobs: the dead-letter index of history, (queue, id) WHERE status <>
//   'completed', one queue or all in (queue, id) order: never the completed jobs;
// - deleting completed jobs: history by id (every finished job is a candidate);
// - cancelling: live jobs by id.
// An action removes what it acted on from the walked set (retried jobs leave history, cancelled
// ones leave `jobs`, deleted ones are gone), so a repeat of the same request finds nothing more
// to do. A retried job that fails again is a new failure; `finishedBefore` excludes it too.

/** What a bulk request does to the jobs that match. */
export type BulkAction = "retry" | "cancel" | "delete";

/** The statuses each action takes (and its default when none is named). */
export const BULK_STATUSES: Record<BulkAction, readonly JobStatus[]> = {
  retry: ["failed", "cancelled"],
  cancel: LIVE_STATUSES,
  delete: TERMINAL_STATUSES,
};

/** Which jobs a bulk request acts on. Absent fields do not filter. */
export interface BulkFilter {
  /** One of the action's statuses ({@link BULK_STATUSES}); at least one. */
  statuses: readonly JobStatus[];
  queue?: string;
  task?: string;
  /** Submitted at or after. */
  createdAfter?: Date;
  /** Submitted before. */
  createdBefore?: Date;
  /** Finished before (a live job has not finished, so matches no such filter). */
  finishedBefore?: Date;
}

export interface BulkOptions {
  /** Candidate rows read per statement (default 500). */
  batchSize?: number;
  /** Count the matching jobs instead of acting on them, up to `countCap`. */
  dryRun?: boolean;
  /** A dry run stops counting here (default 10,000). */
  countCap?: number;
  /** Stops between batches (the client went away). */
  signal?: AbortSignal;
  /** Kept in the `cancelled` events of a bulk cancel. */
  reason?: string;
}

export interface BulkResult {
  /** Jobs retried, cancelled or deleted; in a dry run, jobs that match. */
  affected: number;
  /** Retry only: failed jobs left as they are because a live job now holds their idempotency key. */
  skipped: number;
  /** Dry run only: the count stopped at the cap, there are at least `affected`. */
  capped: boolean;
  /** Statements (batches) run. */
  batches: number;
}

export const DEFAULT_BULK_BATCH = 500;
export const DEFAULT_BULK_COUNT_CAP = 10_000;

// ---- the walks ----------------------------------------------------------------------------------
//
// Every statement takes the same parameters: $1 the cursor's id, $2 the window size, $3 the
// statuses, $4 task, $5 created at or after, $6 created before, $7 finished before, $8 the queue
// (the filter; in the walk over every queue's dead letters, the cursor's queue). A window selects
// the columns the filter reads, so the filter costs no second read of the rows.

type Walk = "deadInQueue" | "deadAll" | "history" | "live";

const HISTORY_COLUMNS = `h.id, h.queue, h.task, h.status, h.created_at, h.finished_at,
       h.idempotency_key`;

const WINDOWS: Record<Walk, string> = {
  deadInQueue: `SELECT ${HISTORY_COLUMNS} FROM {{schema}}.job_history h
     WHERE h.status <> 'completed' AND h.queue = $8::text AND h.id > $1::bigint
     ORDER BY h.id LIMIT $2`,
  deadAll: `SELECT ${HISTORY_COLUMNS} FROM {{schema}}.job_history h
     WHERE h.status <> 'completed' AND (h.queue, h.id) > ($8::text, $1::bigint)
     ORDER BY h.queue, h.id LIMIT $2`,
  history: `SELECT ${HISTORY_COLUMNS} FROM {{schema}}.job_history h
     WHERE h.id > $1::bigint
     ORDER BY h.id LIMIT $2`,
  live: `SELECT j.id, j.queue, j.task, j.status, j.created_at, NULL::timestamptz AS finished_at,
       j.idempotency_key FROM {{schema}}.jobs j
     WHERE j.id > $1::bigint
     ORDER BY j.id LIMIT $2`,
};

/** The filter over a window `w`; the dead-letter walks filter the queue in the window itself. */
function matches(walk: Walk): string {
  const queue =
    walk === "deadInQueue" || walk === "deadAll" ? "" : "AND ($8::text IS NULL OR w.queue = $8)";
  return `w.status = ANY ($3::text[])
     AND ($4::text IS NULL OR w.task = $4)
     AND ($5::timestamptz IS NULL OR w.created_at >= $5)
     AND ($6::timestamptz IS NULL OR w.created_at < $6)
     AND ($7::timestamptz IS NULL OR w.finished_at < $7)
     ${queue}`;
}

/** Where the walk stands after a window: its size and its last row in the walk's order. */
function windowEnd(walk: Walk): string {
  const order = walk === "deadAll" ? "w.queue DESC, w.id DESC" : "w.id DESC";
  return `(SELECT count(*)::integer FROM win) AS scanned,
   (SELECT w.queue FROM win w ORDER BY ${order} LIMIT 1) AS last_queue,
   (SELECT w.id FROM win w ORDER BY ${order} LIMIT 1) AS last_id`;
}

// A dry run: how many rows of the window match.
const COUNT = Object.fromEntries(
  (Object.keys(WINDOWS) as Walk[]).map((walk) => [
    walk,
    statement(
      `bulk_count_${walk}`,
      `WITH win AS MATERIALIZED (${WINDOWS[walk]})
       SELECT (SELECT count(*)::integer FROM win w WHERE ${matches(walk)}) AS affected,
              0 AS skipped, ${windowEnd(walk)}`,
    ),
  ]),
) as Record<Walk, Statement>;

// Retry: failed and cancelled jobs back to `jobs` as pending now, with a fresh attempt budget and
// a fresh ready_seq, as `retryJobs` does (control.ts), and also:
// - idempotency keys: a key that was released when the job finished (modes 'active' and
//   'debounce' hold a key only while the job lives; history does not keep the mode) is reserved
//   again for the job in mode 'active', so at most one live job holds it; a key still reserved for
//   the job (the default mode) is left as it is; a job whose key a live job now holds stays
//   failed and is counted as skipped;
// - flow control: a revived job holds no slot (held_slot is false until a claim takes one); in a
//   queue served per key, a job without a key gets the key '' as a submission would, and its
//   key's row is made if missing.
function retryStatement(walk: "deadInQueue" | "deadAll"): Statement {
  return statement(
    `bulk_retry_${walk}`,
    `WITH win AS MATERIALIZED (${WINDOWS[walk]}),
     picked AS MATERIALIZED (SELECT w.id, w.queue, w.idempotency_key FROM win w WHERE ${matches(walk)}),
     ${reviveFromHistory("picked", `'{"bulk":true}'::jsonb`)}
     SELECT (SELECT count(*)::integer FROM revived) AS affected,
            (SELECT count(*)::integer FROM blocked) AS skipped,
            (SELECT count(*)::integer FROM woken) AS woke,
            ${windowEnd(walk)}`,
  );
}

const RETRY = { deadInQueue: retryStatement("deadInQueue"), deadAll: retryStatement("deadAll") };

// Delete: finished jobs, with their events and the idempotency key they still hold (a key left
// pointing at no job would make a later submission of it a duplicate of nothing).
function deleteStatement(walk: "deadInQueue" | "deadAll" | "history"): Statement {
  return statement(
    `bulk_delete_${walk}`,
    `WITH win AS MATERIALIZED (${WINDOWS[walk]}),
     gone AS (
       DELETE FROM {{schema}}.job_history h
       WHERE h.id IN (SELECT w.id FROM win w WHERE ${matches(walk)})
       RETURNING h.id, h.queue, h.idempotency_key
     ), keys AS (
       DELETE FROM {{schema}}.job_keys k USING gone g
       WHERE k.queue = g.queue AND k.key = g.idempotency_key AND k.job_id = g.id
     ), events AS (
       DELETE FROM {{schema}}.job_events e WHERE e.job_id IN (SELECT g.id FROM gone g)
     )
     SELECT (SELECT count(*)::integer FROM gone) AS affected, 0 AS skipped, ${windowEnd(walk)}`,
  );
}

const DELETE = {
  deadInQueue: deleteStatement("deadInQueue"),
  deadAll: deleteStatement("deadAll"),
  history: deleteStatement("history"),
};

// Cancel, in one transaction per window: the window's matching ids (no lock), then those ids
// locked in id order with the filter checked again (a job claimed meanwhile is running now, and
// may no longer match), then `cancelJobs` on what is locked: one cancellation, written once.
const CANCEL_WINDOW = statement(
  "bulk_cancel_window",
  `WITH win AS MATERIALIZED (${WINDOWS.live})
   SELECT ARRAY(SELECT w.id FROM win w WHERE ${matches("live")} ORDER BY w.id) AS ids,
          0 AS affected, 0 AS skipped, ${windowEnd("live")}`,
);

const CANCEL_LOCK = statement(
  "bulk_cancel_lock",
  `SELECT j.id FROM {{schema}}.jobs j
   WHERE j.id = ANY ($1::bigint[])
     AND j.status = ANY ($2::text[])
     AND ($3::text IS NULL OR j.task = $3)
     AND ($4::timestamptz IS NULL OR j.created_at >= $4)
     AND ($5::timestamptz IS NULL OR j.created_at < $5)
     AND ($6::text IS NULL OR j.queue = $6)
   ORDER BY j.id
   FOR UPDATE`,
);

interface BatchRow {
  affected: number;
  skipped: number;
  scanned: number;
  last_queue: string | null;
  last_id: string | number | null;
  ids?: Array<string | number>;
}

/** Which walk finds the candidates of an action. */
function walkFor(action: BulkAction, filter: BulkFilter): Walk {
  if (action === "cancel") return "live";
  const dead = filter.statuses.every((s) => s === "failed" || s === "cancelled");
  if (!dead) return "history";
  return filter.queue === undefined ? "deadAll" : "deadInQueue";
}

/**
 * Retries, cancels or deletes every job matching `filter`, a bounded batch per statement, and
 * answers how many it acted on. Retry takes failed and cancelled jobs, cancel live ones, delete
 * finished ones (see {@link BULK_STATUSES}); statuses outside the action's set are the caller's
 * to refuse. Safe to repeat: what was acted on no longer matches.
 */
export async function bulkJobs(
  pool: pg.Pool,
  sql: SchemaSql,
  action: BulkAction,
  filter: BulkFilter,
  options: BulkOptions = {},
): Promise<BulkResult> {
  const walk = walkFor(action, filter);
  const batchSize = options.batchSize ?? DEFAULT_BULK_BATCH;
  const cap = options.countCap ?? DEFAULT_BULK_COUNT_CAP;
  const result: BulkResult = { affected: 0, skipped: 0, capped: false, batches: 0 };
  let cursorId = 0;
  // The dead-letter walk over every queue starts before the first name ('' sorts first).
  let cursorQueue = walk === "deadAll" ? "" : (filter.queue ?? null);
  for (;;) {
    if (options.signal?.aborted) break;
    const values = [
      cursorId,
      batchSize,
      [...filter.statuses],
      filter.task ?? null,
      filter.createdAfter?.toISOString() ?? null,
      filter.createdBefore?.toISOString() ?? null,
      filter.finishedBefore?.toISOString() ?? null,
      walk === "deadAll" ? cursorQueue : (filter.queue ?? null),
    ];
    const row = await withDeadlockRetry(() =>
      options.dryRun
        ? one(pool, sql, COUNT[walk], values)
        : action === "cancel"
          ? cancelBatch(pool, sql, values, filter, options.reason)
          : action === "retry"
            ? one(pool, sql, RETRY[walk as "deadInQueue" | "deadAll"], values)
            : one(pool, sql, DELETE[walk as "deadInQueue" | "deadAll" | "history"], values),
    );
    result.batches++;
    result.affected += row.affected;
    result.skipped += row.skipped;
    if (options.dryRun && result.affected >= cap) {
      result.affected = cap;
      result.capped = true;
      break;
    }
    if (row.scanned < batchSize || row.last_id === null) break;
    cursorId = Number(row.last_id);
    if (walk === "deadAll") cursorQueue = row.last_queue;
  }
  return result;
}

async function one(
  db: Queryable,
  sql: SchemaSql,
  stmt: Statement,
  values: unknown[],
): Promise<BatchRow> {
  const { rows } = await db.query<BatchRow>({ ...sql.bind(stmt), values });
  return rows[0]!;
}

async function cancelBatch(
  pool: pg.Pool,
  sql: SchemaSql,
  values: unknown[],
  filter: BulkFilter,
  reason = "cancelled by a bulk request",
): Promise<BatchRow> {
  const window = await one(pool, sql, CANCEL_WINDOW, values);
  const ids = (window.ids ?? []).map(Number);
  if (ids.length === 0) return window;
  const affected = await withClient(pool, async (client) => {
    await client.query("BEGIN");
    try {
      const { rows } = await client.query<{ id: string | number }>({
        ...sql.bind(CANCEL_LOCK),
        values: [
          ids,
          [...filter.statuses],
          filter.task ?? null,
          filter.createdAfter?.toISOString() ?? null,
          filter.createdBefore?.toISOString() ?? null,
          filter.queue ?? null,
        ],
      });
      const cancelled = await cancelJobs(
        client,
        sql,
        rows.map((r) => Number(r.id)),
        reason,
      );
      await client.query("COMMIT");
      return cancelled.length;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    }
  });
  return { ...window, affected };
}

const RETRIED_SQLSTATES = new Set(["40P01", "40001"]);

/**
 * A batch that lost a deadlock (another statement locked some of the same rows in another
 * order) or a serialization race is run again: it changed nothing.
 */
async function withDeadlockRetry<T>(run: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (attempt >= attempts || typeof code !== "string" || !RETRIED_SQLSTATES.has(code)) {
        throw error;
      }
    }
  }
}
