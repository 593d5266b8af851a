import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";

// The fleet as the workers last reported it: one small row per live process (a worker whose
// lease ran out is being reaped, or is gone), read through the table's primary key order.
const LIVE_WORKERS = statement(
  "ui_live_workers",
  `SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.running, w.running_by_queue,
          w.listening, w.started_at, w.last_seen_at, w.lease_expires_at
   FROM {{schema}}.workers w
   WHERE w.reaped_at IS NULL AND w.lease_expires_at > now()
   ORDER BY w.id
   LIMIT 1000`,
);

/** A live worker process. */
export interface LiveWorker {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  concurrency: number;
  /** Jobs it holds, as of its last heartbeat. */
  running: number;
  runningByQueue: Record<string, number>;
  listening: boolean;
  startedAt: Date;
  lastSeenAt: Date;
  leaseExpiresAt: Date;
}

/** Live workers (at most 1,000), by id. */
export async function liveWorkers(db: Queryable, sql: SchemaSql): Promise<LiveWorker[]> {
  const { rows } = await db.query<{
    id: string;
    host: string;
    pid: number;
    queues: string[];
    concurrency: number;
    running: number;
    running_by_queue: Record<string, number>;
    listening: boolean;
    started_at: Date;
    last_seen_at: Date;
    lease_expires_at: Date;
  }>(sql.bind(LIVE_WORKERS));
  return rows.map((row) => ({
    id: row.id,
    host: row.host,
    pid: row.pid,
    queues: row.queues,
    concurrency: row.concurrency,
    running: row.running,
    runningByQueue: row.running_by_queue,
    listening: row.listening,
    startedAt: row.started_at,
    lastSeenAt: row.last_seen_at,
    leaseExpiresAt: row.lease_expires_at,
  }));
}
