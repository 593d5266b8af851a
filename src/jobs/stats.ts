import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";

/** What finished in one queue in one minute, as a process counted it. */
export interface MinuteCounts {
  queue: string;
  /** The minute (any time within it). */
  minute: Date;
  completed: number;
  failed: number;
  cancelled: number;
  retried: number;
  runMs: number;
  waitMs: number;
}

// Adds many (queue, minute) counts in one statement (see `queue_minutes` in 0003_engine.sql).
const ADD_MINUTES = statement(
  "add_queue_minutes",
  `INSERT INTO {{schema}}.queue_minutes AS m
     (queue, minute, completed, failed, cancelled, retried, run_ms, wait_ms)
   SELECT c.queue, date_trunc('minute', c.minute), c.completed, c.failed, c.cancelled, c.retried,
          c.run_ms, c.wait_ms
   FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[],
               $6::bigint[], $7::bigint[], $8::bigint[])
     AS c(queue, minute, completed, failed, cancelled, retried, run_ms, wait_ms)
   ORDER BY 1, 2
   ON CONFLICT (queue, minute) DO UPDATE
   SET completed = m.completed + EXCLUDED.completed, failed = m.failed + EXCLUDED.failed,
       cancelled = m.cancelled + EXCLUDED.cancelled, retried = m.retried + EXCLUDED.retried,
       run_ms = m.run_ms + EXCLUDED.run_ms, wait_ms = m.wait_ms + EXCLUDED.wait_ms`,
);

/** Adds counts to their minutes. Rows are upserted in (queue, minute) order: no deadlock. */
export async function addMinuteCounts(
  db: Queryable,
  sql: SchemaSql,
  counts: readonly MinuteCounts[],
): Promise<void> {
  if (counts.length === 0) return;
  await db.query({
    ...sql.bind(ADD_MINUTES),
    values: [
      counts.map((c) => c.queue),
      counts.map((c) => c.minute.toISOString()),
      counts.map((c) => c.completed),
      counts.map((c) => c.failed),
      counts.map((c) => c.cancelled),
      counts.map((c) => c.retried),
      counts.map((c) => Math.round(c.runMs)),
      counts.map((c) => Math.round(c.waitMs)),
    ],
  });
}

const PRUNE_MINUTES = statement(
  "prune_queue_minutes",
  `DELETE FROM {{schema}}.queue_minutes
   WHERE minute < now() - $1::bigint * interval '1 millisecond'`,
);

/** Forgets per-minute counts older than `keepMs`. */
export async function pruneMinuteCounts(
  db: Queryable,
  sql: SchemaSql,
  keepMs: number,
): Promise<number> {
  const { rowCount } = await db.query({ ...sql.bind(PRUNE_MINUTES), values: [keepMs] });
  return rowCount ?? 0;
}

// Minutes of hours that ended more than an hour ago are folded into their hour's first minute
// (hh:00), a bounded batch per call: `GET /queues` sums the completed jobs of the whole
// retention period, and 168 rows a week read much faster than 10,080. The last hour or two keep
// their minutes (the dashboard charts them). Rows deleted by a concurrent call are not returned
// to this one, so nothing is counted twice.
const COMPACT_MINUTES = statement(
  "compact_queue_minutes",
  `WITH old AS (
     DELETE FROM {{schema}}.queue_minutes m
     WHERE (m.queue, m.minute) IN (
       SELECT o.queue, o.minute FROM {{schema}}.queue_minutes o
       WHERE o.minute < date_trunc('hour', now()) - interval '1 hour'
         AND o.minute <> date_trunc('hour', o.minute)
       LIMIT $1)
     RETURNING m.*
   ), folded AS (
     INSERT INTO {{schema}}.queue_minutes AS m
       (queue, minute, completed, failed, cancelled, retried, run_ms, wait_ms)
     SELECT o.queue, date_trunc('hour', o.minute), sum(o.completed), sum(o.failed),
            sum(o.cancelled), sum(o.retried), sum(o.run_ms), sum(o.wait_ms)
     FROM old o GROUP BY 1, 2 ORDER BY 1, 2
     ON CONFLICT (queue, minute) DO UPDATE
     SET completed = m.completed + EXCLUDED.completed, failed = m.failed + EXCLUDED.failed,
         cancelled = m.cancelled + EXCLUDED.cancelled, retried = m.retried + EXCLUDED.retried,
         run_ms = m.run_ms + EXCLUDED.run_ms, wait_ms = m.wait_ms + EXCLUDED.wait_ms
   )
   SELECT count(*)::integer AS folded FROM old`,
);

/** Folds old minutes into hours (up to `limit` minute rows); returns how many it folded. */
export async function compactMinuteCounts(
  db: Queryable,
  sql: SchemaSql,
  limit = 20_000,
): Promise<number> {
  const { rows } = await db.query<{ folded: number }>({
    ...sql.bind(COMPACT_MINUTES),
    values: [limit],
  });
  return rows[0]!.folded;
}

/**
 * Sums a process's counts per (queue, minute) between flushes. Minutes are the database's: the
 * caller passes times it read from job rows (claim times), never its own clock.
 */
export class MinuteCounter {
  private counts = new Map<string, MinuteCounts>();

  add(queue: string, at: Date, delta: Partial<Omit<MinuteCounts, "queue" | "minute">>): void {
    const minute = new Date(Math.floor(at.getTime() / 60_000) * 60_000);
    const key = `${queue}\u0000${minute.getTime()}`;
    let entry = this.counts.get(key);
    if (!entry) {
      entry = {
        queue,
        minute,
        completed: 0,
        failed: 0,
        cancelled: 0,
        retried: 0,
        runMs: 0,
        waitMs: 0,
      };
      this.counts.set(key, entry);
    }
    entry.completed += delta.completed ?? 0;
    entry.failed += delta.failed ?? 0;
    entry.cancelled += delta.cancelled ?? 0;
    entry.retried += delta.retried ?? 0;
    entry.runMs += delta.runMs ?? 0;
    entry.waitMs += delta.waitMs ?? 0;
  }

  get size(): number {
    return this.counts.size;
  }

  /** Takes the counts gathered so far (to write), leaving none. */
  take(): MinuteCounts[] {
    const taken = [...this.counts.values()];
    this.counts = new Map();
    return taken;
  }

  /** Puts counts back after a failed write. */
  restore(counts: readonly MinuteCounts[]): void {
    for (const c of counts) this.add(c.queue, c.minute, c);
  }
}
