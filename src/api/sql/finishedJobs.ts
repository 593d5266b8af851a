import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";

// Jobs that finished after a watermark, in (finished_at, id) order, for the metrics scrape.
// Only rows finished at least `lag` ago are read: finished_at is the writer's transaction time,
// so a row stamped just now may still be committing, and reading it later past a watermark that
// already moved on would miss it. Served by jobs_finished_idx.
const FINISHED_JOBS = statement(
  "api_finished_jobs",
  `SELECT id, queue, task, status,
          extract(epoch FROM finished_at - started_at)::double precision AS run_seconds,
          extract(epoch FROM started_at - greatest(run_at, created_at))::double precision AS wait_seconds,
          (extract(epoch FROM finished_at) * 1000000)::bigint AS finished_us
   FROM {{schema}}.jobs
   WHERE status IN ('completed', 'failed', 'cancelled')
     AND (finished_at, id) > ('epoch'::timestamptz + $1::bigint * interval '1 microsecond', $2::bigint)
     AND finished_at <= now() - $3::integer * interval '1 millisecond'
   ORDER BY finished_at, id
   LIMIT $4`,
);

export interface FinishedJob {
  id: number;
  queue: string;
  task: string;
  status: "completed" | "failed" | "cancelled";
  /** Seconds from the last claim to the end; null when the job never ran (cancelled early). */
  run_seconds: number | null;
  /** Seconds from ready (run_at) to the last claim; null when it never ran. */
  wait_seconds: number | null;
  /** finished_at in microseconds since the epoch: exact, unlike a JS Date. */
  finished_us: number;
}

/** Finished jobs after the watermark `(afterUs, afterId)`, oldest first. */
export async function finishedJobs(
  db: Queryable,
  sql: SchemaSql,
  options: { afterUs: number; afterId: number; lagMs: number; limit: number },
): Promise<FinishedJob[]> {
  const { rows } = await db.query<FinishedJob>({
    ...sql.bind(FINISHED_JOBS),
    values: [options.afterUs, options.afterId, options.lagMs, options.limit],
  });
  return rows;
}
