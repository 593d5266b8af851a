import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import type { JobStatus } from "./types.ts";

// Every queue anyone knows of: one with jobs, one with settings (paused), or one a live worker
// serves. The counts read the whole table (finished jobs are kept for the retention period):
// this is an operator's view, not a hot path, and no index on status is kept for it because
// every such index would be written on every claim and completion.
const QUEUE_STATS = statement(
  "queue_stats",
  `WITH counts AS (
     SELECT queue, status, count(*)::integer AS n,
            min(run_at) FILTER (WHERE status IN ('pending', 'retrying') AND run_at <= now()) AS oldest_ready
     FROM {{schema}}.jobs
     GROUP BY queue, status
   ), names AS (
     SELECT queue AS name FROM counts
     UNION SELECT name FROM {{schema}}.queues
     UNION SELECT unnest(queues) FROM {{schema}}.workers
   )
   SELECT n.name,
          coalesce(q.paused, false) AS paused,
          coalesce((SELECT jsonb_object_agg(c.status, c.n) FROM counts c WHERE c.queue = n.name),
                   '{}'::jsonb) AS counts,
          (SELECT extract(epoch FROM now() - min(c.oldest_ready)) * 1000
           FROM counts c WHERE c.queue = n.name)::double precision AS oldest_ready_age_ms,
          coalesce((SELECT jsonb_agg(jsonb_build_object(
                      'id', w.id, 'host', w.host, 'pid', w.pid, 'concurrency', w.concurrency,
                      'listening', w.listening, 'lastSeenAt', w.last_seen_at) ORDER BY w.id)
                    FROM {{schema}}.workers w WHERE n.name = ANY (w.queues)),
                   '[]'::jsonb) AS workers
   FROM names n
   LEFT JOIN {{schema}}.queues q ON q.name = n.name
   ORDER BY n.name`,
);

export interface QueueWorker {
  id: string;
  host: string;
  pid: number;
  concurrency: number;
  listening: boolean;
  lastSeenAt: string;
}

export interface QueueStats {
  name: string;
  paused: boolean;
  /** Jobs by status; statuses with no jobs are 0. */
  counts: Record<JobStatus, number>;
  /** How long the oldest job ready to run has waited (ms); null when none is ready. */
  oldestPendingAgeMs: number | null;
  workers: QueueWorker[];
}

const ZERO: Record<JobStatus, number> = {
  pending: 0,
  running: 0,
  retrying: 0,
  completed: 0,
  failed: 0,
  cancelled: 0,
};

/** Per queue: counts by status, the oldest ready job's age, the pause flag, its workers. */
export async function queueStats(db: Queryable, sql: SchemaSql): Promise<QueueStats[]> {
  const { rows } = await db.query<{
    name: string;
    paused: boolean;
    counts: Partial<Record<JobStatus, number>>;
    oldest_ready_age_ms: number | null;
    workers: QueueWorker[];
  }>(sql.bind(QUEUE_STATS));
  return rows.map((row) => ({
    name: row.name,
    paused: row.paused,
    counts: { ...ZERO, ...row.counts },
    oldestPendingAgeMs:
      row.oldest_ready_age_ms === null ? null : Math.max(0, Math.round(row.oldest_ready_age_ms)),
    workers: row.workers,
  }));
}
