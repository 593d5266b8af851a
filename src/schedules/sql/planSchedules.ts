import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";
import { compileSchedule, nextTick } from "../cron.ts";

// Schedules without a next tick: inserted from SQL, new, or whose expression or zone changed.
const READ_UNPLANNED = statement(
  "schedules_read_unplanned",
  `SELECT clock.now AS db_now, u.*
   FROM (SELECT now() AS now) clock
   LEFT JOIN LATERAL (
     SELECT s.name, s.cron, s.time_zone, s.last_tick_at
     FROM {{schema}}.schedules s
     WHERE s.next_run_at IS NULL AND NOT s.paused AND s.invalid_reason IS NULL
       AND ($2::text[] IS NULL OR s.name = ANY ($2::text[]))
     ORDER BY s.name
     LIMIT $1
   ) u ON true`,
);

// Only rows still unplanned with the expression and zone that were read: a row changed in
// between is planned again by the next pass.
const SET_PLANNED = statement(
  "schedules_set_planned",
  `UPDATE {{schema}}.schedules s
   SET next_run_at = i.next_run_at, invalid_reason = i.invalid_reason
   FROM jsonb_to_recordset($1::jsonb) AS i(
     name text, cron text, time_zone text, next_run_at timestamptz, invalid_reason text)
   WHERE s.name = i.name AND s.next_run_at IS NULL AND s.invalid_reason IS NULL
     AND s.cron = i.cron AND s.time_zone = i.time_zone
   RETURNING s.name, s.invalid_reason`,
);

export interface PlanResult {
  /** Schedules given their next tick. */
  planned: number;
  /** Schedules parked because their expression or zone cannot be evaluated. */
  invalid: Array<{ name: string; reason: string }>;
}

/**
 * Computes the next tick of schedules that have none: the first tick after the later of the
 * database's now and the last decided tick (a changed expression never refires a decided time).
 * A row whose expression or zone cannot be read is parked with `invalid_reason`.
 */
export async function planSchedules(
  db: Queryable,
  sql: SchemaSql,
  options: { limit?: number; names?: readonly string[] } = {},
): Promise<PlanResult> {
  const { rows } = await db.query<{
    db_now: Date;
    name: string | null;
    cron: string;
    time_zone: string;
    last_tick_at: Date | null;
  }>({
    ...sql.bind(READ_UNPLANNED),
    values: [options.limit ?? 1000, options.names ?? null],
  });
  const due = rows.filter((row) => row.name !== null);
  if (due.length === 0) return { planned: 0, invalid: [] };
  const now = rows[0]!.db_now;
  const input = due.map((row) => {
    const base = row.last_tick_at && row.last_tick_at > now ? row.last_tick_at : now;
    let next: Date | null = null;
    let invalid: string | null = null;
    try {
      next = nextTick(compileSchedule(row.cron, row.time_zone), base);
      if (!next) invalid = "the expression names no further time";
    } catch (error) {
      invalid = (error as Error).message;
    }
    return {
      name: row.name,
      cron: row.cron,
      time_zone: row.time_zone,
      next_run_at: next?.toISOString() ?? null,
      invalid_reason: invalid,
    };
  });
  const updated = await db.query<{ name: string; invalid_reason: string | null }>({
    ...sql.bind(SET_PLANNED),
    values: [JSON.stringify(input)],
  });
  const result: PlanResult = { planned: 0, invalid: [] };
  for (const row of updated.rows) {
    if (row.invalid_reason === null) result.planned++;
    else result.invalid.push({ name: row.name, reason: row.invalid_reason });
  }
  return result;
}
