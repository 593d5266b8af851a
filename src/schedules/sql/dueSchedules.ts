import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";
import type { CatchUpPolicy, OverlapPolicy } from "../types.ts";

// Due schedules, oldest tick first, through the partial indexes on next_run_at (never a scan of
// every schedule). Overlap `allow` is due `lookahead` early, `skip` only at its tick. The row lock
// lasts only this statement: it makes a process skip rows another process is firing right now,
// so processes spread over a burst instead of all computing the same batch.
const READ_DUE_SCHEDULES = statement(
  "schedules_read_due",
  `WITH due_allow AS (
     SELECT s.name, s.cron, s.time_zone, s.next_run_at, s.catch_up, s.catch_up_limit, s.overlap
     FROM {{schema}}.schedules s
     WHERE NOT s.paused AND s.overlap = 'allow'
       AND s.next_run_at <= now() + $1::integer * interval '1 millisecond'
     ORDER BY s.next_run_at
     LIMIT $2
     FOR NO KEY UPDATE SKIP LOCKED
   ), due_skip AS (
     SELECT s.name, s.cron, s.time_zone, s.next_run_at, s.catch_up, s.catch_up_limit, s.overlap
     FROM {{schema}}.schedules s
     WHERE NOT s.paused AND s.overlap = 'skip' AND s.next_run_at <= now()
     ORDER BY s.next_run_at
     LIMIT $2
     FOR NO KEY UPDATE SKIP LOCKED
   ), due AS (
     SELECT * FROM due_allow UNION ALL SELECT * FROM due_skip
   )
   SELECT clock.now AS db_now, due.*
   FROM (SELECT now() AS now) clock LEFT JOIN due ON true`,
);

export interface DueScheduleRow {
  name: string;
  cron: string;
  time_zone: string;
  next_run_at: Date;
  catch_up: CatchUpPolicy;
  catch_up_limit: number;
  overlap: OverlapPolicy;
}

/** Reads up to `limit` due schedules of each overlap policy, with the database's clock. */
export async function readDueSchedules(
  db: Queryable,
  sql: SchemaSql,
  lookaheadMs: number,
  limit: number,
): Promise<{ now: Date; rows: DueScheduleRow[] }> {
  const { rows } = await db.query<DueScheduleRow & { db_now: Date; name: string | null }>({
    ...sql.bind(READ_DUE_SCHEDULES),
    values: [lookaheadMs, limit],
  });
  return { now: rows[0]!.db_now, rows: rows.filter((row) => row.name !== null) };
}
