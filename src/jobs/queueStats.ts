import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import type { LimitsSource, QueueLimits } from "./flowControl.ts";
import type { JobStatus } from "./types.ts";

/** Live counts are exact up to this many jobs per queue and status, and say so above it. */
export const COUNT_CAP = 10_000;

// Every queue anyone knows of (registered by submissions, paused, or served by a live worker),
// with counts that never scan a table: jobs ready, scheduled and retrying are counted through
// their indexes up to COUNT_CAP each, and so are the failed and cancelled jobs in history (the
// dead-letter index holds only those); jobs running are what the live workers reported with
// their last heartbeat (claimed jobs a worker holds, buffered or started); completed jobs are
// the per-minute counts the workers write as jobs complete, over the retention period (or the
// last 7 days when history is kept forever): a completed job stays completed, so that sum is
// what history holds, give or take a slot.
const QUEUE_STATS = statement(
  "queue_stats",
  `WITH live AS (
     SELECT w.* FROM {{schema}}.workers w
     WHERE w.reaped_at IS NULL AND w.lease_expires_at > now()
   ), names AS (
     SELECT name FROM {{schema}}.queues
     UNION SELECT q FROM live, unnest(live.queues) AS q WHERE q <> '*'
   ), window_start AS MATERIALIZED (
     SELECT now() - coalesce(s.history_slot_ms * 5, 7 * 86400000) * interval '1 millisecond' AS t
     FROM {{schema}}.settings s
   )
   SELECT n.name,
          coalesce(q.paused, false) AS paused,
          (SELECT count(*)::integer FROM (SELECT 1 FROM {{schema}}.jobs j
             WHERE j.queue = n.name AND j.status = 'pending' LIMIT $1) c) AS pending,
          (SELECT count(*)::integer FROM (SELECT 1 FROM {{schema}}.jobs j
             WHERE j.queue = n.name AND j.status = 'scheduled' LIMIT $1) c) AS scheduled,
          (SELECT count(*)::integer FROM (SELECT 1 FROM {{schema}}.jobs j
             WHERE j.queue = n.name AND j.status = 'retrying' LIMIT $1) c) AS retrying,
          (SELECT coalesce(sum((l.running_by_queue ->> n.name)::integer), 0)::integer FROM live l)
            AS running,
          (SELECT coalesce(sum(m.completed), 0)::bigint
           FROM {{schema}}.queue_minutes m, window_start ws
           WHERE m.queue = n.name AND m.minute >= date_trunc('minute', ws.t)) AS completed,
          (SELECT count(*)::integer FROM (SELECT 1 FROM {{schema}}.job_history h
             WHERE h.queue = n.name AND h.status <> 'completed' AND h.status = 'failed' LIMIT $1) c)
            AS failed,
          (SELECT count(*)::integer FROM (SELECT 1 FROM {{schema}}.job_history h
             WHERE h.queue = n.name AND h.status <> 'completed' AND h.status = 'cancelled' LIMIT $1) c)
            AS cancelled,
          (SELECT extract(epoch FROM now() - min(j.run_at)) * 1000 FROM (
             SELECT j.run_at FROM {{schema}}.jobs j WHERE j.queue = n.name AND j.status = 'pending'
             LIMIT $1) j)::double precision AS oldest_ready_age_ms,
          coalesce((SELECT jsonb_agg(jsonb_build_object(
                      'id', l.id, 'host', l.host, 'pid', l.pid, 'concurrency', l.concurrency,
                      'listening', l.listening,
                      'running', coalesce((l.running_by_queue ->> n.name)::integer, 0),
                      'lastSeenAt', to_char(l.last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                      ORDER BY l.id)
                    FROM live l WHERE n.name = ANY (l.queues) OR '*' = ANY (l.queues)),
                   '[]'::jsonb) AS workers,
          CASE WHEN q.name IS NOT NULL AND {{schema}}.queue_is_limited(q) THEN jsonb_build_object(
            'concurrency', q.concurrency, 'keyConcurrency', q.key_concurrency,
            'rateLimit', q.rate_limit, 'ratePeriodMs', q.rate_period_ms, 'rateBurst', q.rate_burst,
            'keyRateLimit', q.key_rate_limit, 'keyRatePeriodMs', q.key_rate_period_ms,
            'keyRateBurst', q.key_rate_burst, 'fair', q.fair, 'source', q.limits_source,
            'running', q.running,
            'tokens', {{schema}}.refill(q.tokens, q.tokens_at, q.rate_limit, q.rate_period_ms,
                                        q.rate_burst, now()),
            'throttled', {{schema}}.queue_throttled(q, $1::integer),
            'keys', CASE WHEN {{schema}}.queue_is_keyed(q) THEN (
              SELECT count(*) FROM (SELECT 1 FROM {{schema}}.queue_keys c
                                    WHERE c.queue = q.name LIMIT $1) c) END,
            'busiestKeys', CASE WHEN {{schema}}.queue_is_keyed(q) THEN coalesce((
              SELECT jsonb_agg(jsonb_build_object(
                       'key', c.key, 'running', c.running,
                       'tokens', {{schema}}.refill(c.tokens, c.tokens_at, q.key_rate_limit,
                                                   q.key_rate_period_ms, q.key_rate_burst, now()))
                     ORDER BY c.running DESC, c.key)
              FROM (SELECT * FROM {{schema}}.queue_keys c WHERE c.queue = q.name AND c.running > 0
                    ORDER BY c.running DESC, c.key LIMIT 10) c), '[]'::jsonb) END)
          END AS flow
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
  /** Jobs of this queue the worker holds (started or buffered), as of its last heartbeat. */
  running: number;
  lastSeenAt: string;
}

export interface QueueStats {
  name: string;
  paused: boolean;
  /**
   * Jobs by status. Live statuses are exact up to `COUNT_CAP` (see `capped`); running is what the
   * live workers last reported; finished statuses count the jobs that finished within the
   * retention period.
   */
  counts: Record<JobStatus, number>;
  /** Statuses whose count reached `COUNT_CAP`: the true number is at least that. */
  capped: JobStatus[];
  /** How long the oldest job ready to run has waited (ms); null when none is ready. */
  oldestPendingAgeMs: number | null;
  workers: QueueWorker[];
  /** The queue's limits and their state; null when it has none (flow control). */
  flow: QueueFlowStats | null;
}

/** A limited queue's limits and their state, as `queueStats` reads them. */
export interface QueueFlowStats extends Required<QueueLimits> {
  source: LimitsSource | null;
  /** Jobs running that hold one of the queue's slots. */
  running: number;
  /** Tokens in the queue's bucket now; null without a rate limit. */
  tokens: number | null;
  /** Pending jobs held back by a limit now, counted up to `COUNT_CAP`. */
  throttled: number;
  /** Concurrency keys the queue knows (counted up to `COUNT_CAP`); null when not keyed. */
  keys: number | null;
  /** The keys running the most jobs (up to 10); null when not keyed. */
  busiestKeys: { key: string; running: number; tokens: number | null }[] | null;
}

/** Per queue: counts by status, the oldest ready job's age, the pause flag, its workers. */
export async function queueStats(db: Queryable, sql: SchemaSql): Promise<QueueStats[]> {
  const { rows } = await db.query<{
    name: string;
    paused: boolean;
    pending: number;
    scheduled: number;
    retrying: number;
    running: number;
    completed: string | number;
    failed: number;
    cancelled: number;
    oldest_ready_age_ms: number | null;
    workers: QueueWorker[];
    flow: QueueFlowStats | null;
  }>({ ...sql.bind(QUEUE_STATS), values: [COUNT_CAP] });
  return rows.map((row) => {
    const counts: Record<JobStatus, number> = {
      scheduled: row.scheduled,
      pending: row.pending,
      running: row.running,
      retrying: row.retrying,
      completed: Number(row.completed),
      failed: row.failed,
      cancelled: row.cancelled,
    };
    const capped = (["scheduled", "pending", "retrying", "failed", "cancelled"] as const).filter(
      (s) => counts[s] >= COUNT_CAP,
    );
    return {
      name: row.name,
      paused: row.paused,
      counts,
      capped,
      oldestPendingAgeMs:
        row.oldest_ready_age_ms === null ? null : Math.max(0, Math.round(row.oldest_ready_age_ms)),
      workers: row.workers,
      flow: row.flow,
    };
  });
}
