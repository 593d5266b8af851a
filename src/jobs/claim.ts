import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { type Job, type JobRow, toJob } from "./types.ts";

// The CTE is the fence: it picks and locks at most $3 rows in claim order, skipping rows other
// workers hold, and the UPDATE touches exactly those. Paused queues are dropped from the list
// first, so a pause takes effect on the very next claim of every worker.
// Each queue is walked on its own (LATERAL): with one queue per index scan the claim index
// yields rows already in (priority, run_at, id) order, so the plan is "read the first $3 index
// entries" instead of "sort every ready row", and the same plan stays good as a generic plan.
// The UPDATE finds its rows through `id = ANY(array)`, never by joining the CTE to the table.
const CLAIM_JOBS = statement(
  "claim_jobs",
  `WITH next AS (
     SELECT c.id
     FROM unnest(ARRAY(
       SELECT unnest($1::text[]) EXCEPT SELECT name FROM {{schema}}.queues WHERE paused
     )) AS q(name)
     CROSS JOIN LATERAL (
       SELECT id, priority, run_at FROM {{schema}}.jobs
       WHERE queue = q.name
         AND status IN ('pending', 'retrying')
         AND run_at <= now()
         AND task = ANY ($2::text[])
       ORDER BY priority, run_at, id
       LIMIT $3
       FOR UPDATE SKIP LOCKED
     ) AS c
     ORDER BY c.priority, c.run_at, c.id
     LIMIT $3
   )
   UPDATE {{schema}}.jobs j
   SET status = 'running',
       attempts = j.attempts + 1,
       lease_owner = $4,
       lease_expires_at = now() + $5::integer * interval '1 millisecond',
       started_at = now(),
       updated_at = now()
   WHERE j.id = ANY (ARRAY(SELECT id FROM next))
   RETURNING j.*`,
);

export interface ClaimOptions {
  queues: readonly string[];
  tasks: readonly string[];
  limit: number;
  workerId: string;
  leaseMs: number;
}

/** Claims up to `limit` ready jobs for one worker, in priority, run_at, id order. */
export async function claimJobs(
  db: Queryable,
  sql: SchemaSql,
  options: ClaimOptions,
): Promise<Job[]> {
  const { rows } = await db.query<JobRow>({
    ...sql.bind(CLAIM_JOBS),
    values: [options.queues, options.tasks, options.limit, options.workerId, options.leaseMs],
  });
  return rows.map((row) => toJob(row));
}
