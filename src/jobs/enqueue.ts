import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { type Job, type JobRow, toJob } from "./types.ts";

/** One job to add. `runAt` and `delayMs` are exclusive; the database clock decides "now". */
export interface NewJob {
  task: string;
  payload?: unknown;
  queue?: string;
  priority?: number;
  runAt?: Date;
  delayMs?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  idempotencyKey?: string;
  requestId?: string;
}

export interface EnqueuedJob<Payload = unknown> {
  job: Job<Payload>;
  /** True when the idempotency key was already taken: `job` is the original. */
  duplicate: boolean;
}

const ENQUEUE_MANY = statement(
  "enqueue_many",
  "SELECT r.ord, (r.job).*, r.duplicate FROM {{schema}}.enqueue_many($1::jsonb) r",
);

/**
 * Inserts jobs in one statement through the schema's `enqueue_many` function, so SQL callers
 * and the library share one implementation. Results come back in input order.
 */
export async function insertJobs(
  db: Queryable,
  sql: SchemaSql,
  jobs: readonly NewJob[],
): Promise<EnqueuedJob[]> {
  if (jobs.length === 0) return [];
  const input = jobs.map((j) => ({
    task: j.task,
    payload: j.payload ?? {},
    queue: j.queue,
    priority: j.priority,
    run_at: j.runAt?.toISOString(),
    delay_ms: j.delayMs,
    max_attempts: j.maxAttempts,
    timeout_ms: j.timeoutMs,
    idempotency_key: j.idempotencyKey,
    request_id: j.requestId,
  }));
  const { rows } = await db.query<JobRow & { ord: number; duplicate: boolean }>({
    ...sql.bind(ENQUEUE_MANY),
    values: [JSON.stringify(input)],
  });
  const out = new Array<EnqueuedJob>(jobs.length);
  for (const row of rows) out[row.ord - 1] = { job: toJob(row), duplicate: row.duplicate };
  return out;
}
