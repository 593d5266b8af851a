import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { releaseSlots } from "./history.ts";

/** What the fleet knows of a worker process (the `workers` row). */
export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  /** Queues it serves; `["*"]` for every queue. */
  queues: readonly string[];
  tasks: readonly string[];
  concurrency: number;
  listening: boolean;
}

// A new worker (or a worker's new incarnation after it was reaped) with a lease from now.
const REGISTER_WORKER = statement(
  "register_worker",
  `INSERT INTO {{schema}}.workers
     (id, host, pid, queues, tasks, concurrency, listening, lease_expires_at)
   VALUES ($1, $2, $3, $4::text[], $5::text[], $6, $7, now() + $8::integer * interval '1 millisecond')
   RETURNING lease_expires_at`,
);

/** Registers a worker with a fresh lease. */
export async function registerWorker(
  db: Queryable,
  sql: SchemaSql,
  worker: WorkerInfo,
  leaseMs: number,
): Promise<void> {
  await db.query({
    ...sql.bind(REGISTER_WORKER),
    values: [
      worker.id,
      worker.host,
      worker.pid,
      worker.queues,
      worker.tasks,
      worker.concurrency,
      worker.listening,
      leaseMs,
    ],
  });
}

// One statement per heartbeat, whatever the number of jobs: the worker's lease covers all the jobs
// it holds, so renewing it is one row. It also answers which of the jobs the worker believes it
// holds are no longer its own (cancelled, or reaped after the lease ran out), so their handlers
// can be stopped. A reaped worker renews nothing: `alive` is false and it must start over under a
// new id. Claims hold FOR KEY SHARE on the row, which this update does not wait for.
const HEARTBEAT = statement(
  "heartbeat",
  `WITH beat AS (
     UPDATE {{schema}}.workers w
     SET lease_expires_at = now() + $2::integer * interval '1 millisecond', last_seen_at = now(),
         listening = $3, running = $4, running_by_queue = $5::jsonb
     WHERE w.id = $1 AND w.reaped_at IS NULL
     RETURNING w.lease_expires_at
   )
   SELECT (SELECT lease_expires_at FROM beat) AS lease_expires_at,
          ARRAY(SELECT h.id FROM unnest($6::bigint[]) AS h(id)
                WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.jobs j
                                  WHERE j.id = h.id AND j.status = 'running' AND j.lease_owner = $1))
            AS lost`,
);

export interface HeartbeatResult {
  /** False when the worker was reaped (or never registered): it holds nothing any more. */
  alive: boolean;
  /** Jobs among those it reported that it no longer holds. */
  lost: number[];
}

/** Renews a worker's lease and says which of `held` it no longer holds. */
export async function heartbeat(
  db: Queryable,
  sql: SchemaSql,
  worker: { id: string; listening: boolean; runningByQueue: Record<string, number> },
  held: readonly number[],
  leaseMs: number,
): Promise<HeartbeatResult> {
  const running = Object.values(worker.runningByQueue).reduce((sum, n) => sum + n, 0);
  const { rows } = await db.query<{ lease_expires_at: Date | null; lost: number[] }>({
    ...sql.bind(HEARTBEAT),
    values: [
      worker.id,
      leaseMs,
      worker.listening,
      running,
      JSON.stringify(worker.runningByQueue),
      held,
    ],
  });
  const row = rows[0]!;
  return { alive: row.lease_expires_at !== null, lost: row.lost.map(Number) };
}

// A worker that stops and holds no job any more is forgotten. One that still holds some (it could
// not write their outcomes, or hand them back) ends its lease now: the reaper takes them back.
const REMOVE_WORKER = statement(
  "remove_worker",
  `WITH tokens AS (
     DELETE FROM {{schema}}.waiters WHERE worker_id = $1
   ), holds AS MATERIALIZED (
     -- Slots its cancelled jobs held: its handlers end with it.
     DELETE FROM {{schema}}.slot_holds h WHERE h.worker_id = $1
     RETURNING h.queue, h.concurrency_key, true AS held_slot
   ), ${releaseSlots("holds")},
   woken AS (
     SELECT {{schema}}.wake_queues(array_agg(DISTINCT queue)) FROM holds
   ), expired AS (
     UPDATE {{schema}}.workers SET lease_expires_at = now() WHERE id = $1 AND $2
   )
   DELETE FROM {{schema}}.workers WHERE id = $1 AND NOT $2 AND EXISTS (SELECT 1 FROM woken)`,
);

/** Takes a stopping worker out of the fleet; `holdsJobs` leaves them to the reaper at once. */
export async function removeWorker(
  db: Queryable,
  sql: SchemaSql,
  workerId: string,
  holdsJobs = false,
): Promise<void> {
  await db.query({ ...sql.bind(REMOVE_WORKER), values: [workerId, holdsJobs] });
}
