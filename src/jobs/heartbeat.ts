import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";

// One statement per heartbeat, whatever the number of jobs: it extends every lease the worker
// still holds and records that the worker is alive. Ids missing from the answer were taken
// away (cancelled, or reaped after the lease expired) and their handlers should stop.
const HEARTBEAT = statement(
  "heartbeat",
  `WITH seen AS (
     INSERT INTO {{schema}}.workers AS w (id, host, pid, queues, tasks, concurrency, listening)
     VALUES ($3, $4, $5, $6::text[], $7::text[], $8, $9)
     ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), listening = EXCLUDED.listening
     RETURNING w.id
   )
   UPDATE {{schema}}.jobs j
   SET lease_expires_at = now() + $2::integer * interval '1 millisecond', updated_at = now()
   WHERE j.id = ANY ($1::bigint[]) AND j.status COLLATE "C" = 'running' AND j.lease_owner = $3
     AND EXISTS (SELECT 1 FROM seen)
   RETURNING j.id`,
);

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  queues: readonly string[];
  tasks: readonly string[];
  concurrency: number;
  listening: boolean;
}

/** Extends the leases of `jobIds` held by the worker; returns the ids it still holds. */
export async function heartbeat(
  db: Queryable,
  sql: SchemaSql,
  worker: WorkerInfo,
  jobIds: readonly number[],
  leaseMs: number,
): Promise<Set<number>> {
  const { rows } = await db.query<{ id: number }>({
    ...sql.bind(HEARTBEAT),
    values: [
      jobIds,
      leaseMs,
      worker.id,
      worker.host,
      worker.pid,
      worker.queues,
      worker.tasks,
      worker.concurrency,
      worker.listening,
    ],
  });
  return new Set(rows.map((r) => r.id));
}

const REMOVE_WORKER = statement(
  "remove_worker",
  `WITH gone AS (DELETE FROM {{schema}}.waiters WHERE worker_id = $1)
   DELETE FROM {{schema}}.workers WHERE id = $1`,
);

/** Forgets a worker that stops cleanly. */
export async function removeWorker(db: Queryable, sql: SchemaSql, workerId: string): Promise<void> {
  await db.query({ ...sql.bind(REMOVE_WORKER), values: [workerId] });
}
