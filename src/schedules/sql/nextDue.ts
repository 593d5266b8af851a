import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";

// Two index probes and an existence check: when the service next has something to do.
const NEXT_DUE = statement(
  "schedules_next_due",
  `SELECT now() AS db_now,
     (SELECT s.next_run_at FROM {{schema}}.schedules s
      WHERE NOT s.paused AND s.overlap = 'allow' AND s.next_run_at IS NOT NULL
      ORDER BY s.next_run_at LIMIT 1) AS next_allow,
     (SELECT s.next_run_at FROM {{schema}}.schedules s
      WHERE NOT s.paused AND s.overlap = 'skip' AND s.next_run_at IS NOT NULL
      ORDER BY s.next_run_at LIMIT 1) AS next_skip,
     EXISTS (SELECT 1 FROM {{schema}}.schedules s
             WHERE s.next_run_at IS NULL AND NOT s.paused AND s.invalid_reason IS NULL) AS unplanned`,
);

export interface NextDue {
  now: Date;
  /** Earliest next tick of a schedule with overlap `allow` (fired up to a lookahead early). */
  nextAllow: Date | null;
  /** Earliest next tick of a schedule with overlap `skip` (fired at the tick). */
  nextSkip: Date | null;
  /** Some schedule still needs its next run computed. */
  unplanned: boolean;
}

export async function readNextDue(db: Queryable, sql: SchemaSql): Promise<NextDue> {
  const { rows } = await db.query<{
    db_now: Date;
    next_allow: Date | null;
    next_skip: Date | null;
    unplanned: boolean;
  }>(sql.bind(NEXT_DUE));
  const row = rows[0]!;
  return {
    now: row.db_now,
    nextAllow: row.next_allow,
    nextSkip: row.next_skip,
    unplanned: row.unplanned,
  };
}
