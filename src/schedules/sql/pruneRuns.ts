import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";

/** Runs every schedule keeps whatever their age, so a daily schedule still shows its history. */
export const KEEP_NEWEST_RUNS = 20;

// A bounded batch of old run rows. A tick whose row is pruned can still never fire again: the
// schedule's last_tick_at only moves forward and the fire statement refuses ticks before it.
const PRUNE_RUNS = statement(
  "schedules_prune_runs",
  `WITH doomed AS (
     SELECT r.id FROM {{schema}}.schedule_runs r
     WHERE r.decided_at < now() - $1::bigint * interval '1 millisecond'
       AND r.id < (SELECT k.id FROM {{schema}}.schedule_runs k
                   WHERE k.schedule_name = r.schedule_name
                   ORDER BY k.id DESC OFFSET ${KEEP_NEWEST_RUNS - 1} LIMIT 1)
     ORDER BY r.decided_at
     LIMIT $2
   ), deleted AS (
     DELETE FROM {{schema}}.schedule_runs r USING doomed WHERE r.id = doomed.id RETURNING 1
   )
   SELECT count(*)::integer AS pruned FROM deleted`,
);

/**
 * Deletes up to `limit` run rows decided more than `olderThanMs` ago, keeping each schedule's
 * newest runs; call again while it returns `limit` (each call is its own short statement).
 */
export async function pruneScheduleRuns(
  db: Queryable,
  sql: SchemaSql,
  options: { olderThanMs: number; limit?: number },
): Promise<number> {
  const { rows } = await db.query<{ pruned: number }>({
    ...sql.bind(PRUNE_RUNS),
    values: [options.olderThanMs, options.limit ?? 1000],
  });
  return rows[0]!.pruned;
}
