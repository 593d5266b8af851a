import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";

// Per queue, the minutes from `$1` minutes ago through this one: the newest `$1` rows of
// `queue_minutes`' primary key (queue, minute) per queue (one row per minute at most), so the
// read costs the rows returned whatever the history holds, and the LIMIT keeps the planner's
// estimate as small as the read (a large estimate would have the server JIT-compile the plan, which
// costs more than the read itself). Queues come from `queues`, where every submission registers
// its queue.
const QUEUE_MINUTES = statement(
  "ui_queue_minutes",
  `WITH span AS MATERIALIZED (
     SELECT now() AS now,
            date_trunc('minute', now()) - ($1::integer - 1) * interval '1 minute' AS first_minute
   )
   SELECT s.now, s.first_minute, m.queue, m.minute, m.completed, m.failed, m.cancelled, m.retried,
          m.run_ms, m.wait_ms
   FROM span s
   LEFT JOIN LATERAL (
     SELECT m.* FROM {{schema}}.queues q
     CROSS JOIN LATERAL (
       SELECT * FROM {{schema}}.queue_minutes m
       WHERE m.queue = q.name AND m.minute >= s.first_minute
       ORDER BY m.minute DESC
       LIMIT $1
     ) m
     WHERE $2::text IS NULL OR q.name = $2
   ) m ON true
   ORDER BY m.queue, m.minute`,
);

/** What ended in one queue in one minute. */
export interface QueueMinute {
  queue: string;
  minute: Date;
  completed: number;
  failed: number;
  cancelled: number;
  retried: number;
  runMs: number;
  waitMs: number;
}

export interface QueueMinutes {
  /** The database's time. */
  now: Date;
  /** The first minute read. */
  from: Date;
  minutes: QueueMinute[];
}

/** The last `minutes` minutes (this one included) of every queue, or of one. */
export async function queueMinutes(
  db: Queryable,
  sql: SchemaSql,
  minutes: number,
  queue?: string,
): Promise<QueueMinutes> {
  const { rows } = await db.query<{
    now: Date;
    first_minute: Date;
    queue: string | null;
    minute: Date | null;
    completed: string;
    failed: string;
    cancelled: string;
    retried: string;
    run_ms: string;
    wait_ms: string;
  }>({ ...sql.bind(QUEUE_MINUTES), values: [minutes, queue ?? null] });
  const first = rows[0]!;
  return {
    now: first.now,
    from: first.first_minute,
    minutes: rows
      .filter((row) => row.queue !== null && row.minute !== null)
      .map((row) => ({
        queue: row.queue!,
        minute: row.minute!,
        completed: Number(row.completed),
        failed: Number(row.failed),
        cancelled: Number(row.cancelled),
        retried: Number(row.retried),
        runMs: Number(row.run_ms),
        waitMs: Number(row.wait_ms),
      })),
  };
}
