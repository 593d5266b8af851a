import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";

// Retries after a watermark event id: automatic ones (`retry_scheduled`) and manual ones
// (`retried`), with the job's queue and task. The same commit-lag guard as finishedJobs.ts.
const RETRY_EVENTS = statement(
  "api_retry_events",
  `SELECT e.id, e.kind, j.queue, j.task
   FROM {{schema}}.job_events e
   JOIN {{schema}}.jobs j ON j.id = e.job_id
   WHERE e.id > $1 AND e.kind IN ('retry_scheduled', 'retried')
     AND e.at <= now() - $2::integer * interval '1 millisecond'
   ORDER BY e.id
   LIMIT $3`,
);

/** The newest event id old enough to read, so a fresh scrape starts from "now". */
const LATEST_EVENT = statement(
  "api_latest_event",
  `SELECT coalesce(max(id), 0)::bigint AS id, now() AS now FROM {{schema}}.job_events`,
);

export interface RetryEvent {
  id: number;
  kind: "retry_scheduled" | "retried";
  queue: string;
  task: string;
}

export async function retryEvents(
  db: Queryable,
  sql: SchemaSql,
  options: { afterId: number; lagMs: number; limit: number },
): Promise<RetryEvent[]> {
  const { rows } = await db.query<RetryEvent>({
    ...sql.bind(RETRY_EVENTS),
    values: [options.afterId, options.lagMs, options.limit],
  });
  return rows;
}

/** Where a metrics watermark starts: the newest event id and the database's clock. */
export async function metricsStart(
  db: Queryable,
  sql: SchemaSql,
): Promise<{ id: number; now: Date }> {
  const { rows } = await db.query<{ id: number; now: Date }>(sql.bind(LATEST_EVENT));
  return rows[0]!;
}
