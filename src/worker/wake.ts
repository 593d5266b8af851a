import type pg from "pg";
import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";

const REGISTER = statement("register_waiter", "SELECT {{schema}}.register_waiter($1::text[], $2)");

// Every transaction in progress once our token is visible. A submitter that found no token (or
// skipped the check because the flag was down) had its transaction id before our commit, so it is
// either committed — our next claim sees its jobs — or listed here, and we claim again when it ends.
// A snapshot's xip only lists running ids below its xmax (the latest *completed* id + 1); ids
// handed out after that are running too but unlisted, so the range up to our own fresh id is
// checked as well.
const IN_PROGRESS = statement(
  "in_progress_xids",
  `WITH s AS (SELECT pg_current_snapshot() AS snap, pg_current_xact_id() AS me)
   SELECT coalesce(array_agg(x::text), '{}') AS xids
   FROM (
     SELECT pg_snapshot_xip(snap) AS x FROM s
     UNION ALL
     SELECT g::text::xid8
     FROM s, generate_series(pg_snapshot_xmax(snap)::text::bigint, me::text::bigint - 1) AS g
   ) AS candidates
   WHERE pg_xact_status(x) = 'in progress'`,
);

const STILL_RUNNING = statement(
  "still_running_xids",
  `SELECT coalesce(array_agg(x::text), '{}') AS xids
   FROM unnest($1::xid8[]) AS x
   WHERE pg_xact_status(x) = 'in progress'`,
);

const RESET = statement("reset_waiting", "SELECT {{schema}}.reset_waiting($1)");

/**
 * Puts this worker's wake-up tokens for `queues` and returns the transactions that were in
 * progress once they were visible: the caller claims now, and again when those have ended.
 */
export async function registerWaiter(
  pool: pg.Pool,
  sql: SchemaSql,
  workerId: string,
  queues: readonly string[],
): Promise<string[]> {
  await pool.query({ ...sql.bind(REGISTER), values: [queues, workerId] });
  const { rows } = await pool.query<{ xids: string[] }>(sql.bind(IN_PROGRESS));
  return rows[0]?.xids ?? [];
}

/** Which of `xids` are still in progress. */
export async function stillRunning(
  db: Queryable,
  sql: SchemaSql,
  xids: readonly string[],
): Promise<string[]> {
  const { rows } = await db.query<{ xids: string[] }>({
    ...sql.bind(STILL_RUNNING),
    values: [xids],
  });
  return rows[0]?.xids ?? [];
}

/**
 * Takes a worker's tokens back (it is busy, or cannot hear notifications), and lowers the
 * "somebody waits" flag if no token is left, so submitters skip the wake-up.
 */
export async function unregisterWaiter(
  db: Queryable,
  sql: SchemaSql,
  workerId: string,
): Promise<void> {
  await db.query({ ...sql.bind(RESET), values: [workerId] });
}
