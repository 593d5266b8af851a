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
  /**
   * How long `idempotencyKey` holds: `retain` (default) for the retention period after
   * submission, `active` while the job is not finished (a new job once it finished), `debounce`
   * while it has not started (a newer submission with the key replaces its payload and run
   * time, and gets it back as a duplicate).
   */
  keyMode?: "retain" | "active" | "debounce";
  /** Counts the job against this key's limits in its queue (flow control). */
  concurrencyKey?: string;
  requestId?: string;
  /**
   * W3C trace context the job's runs continue (`traceparent`, `tracestate`). `Pgwake.enqueue`
   * sets them from its span; given here, they are stored as they are.
   */
  traceParent?: string;
  traceState?: string;
}

export interface EnqueuedJob<Payload = unknown> {
  job: Job<Payload>;
  /** True when the idempotency key was already taken: `job` is the original. */
  duplicate: boolean;
}

export const DEFAULT_QUEUE = "default";

/**
 * A job's place in an insert's lock order: keyed jobs by (queue, key), so two statements racing
 * on the same keys wait for each other instead of deadlocking; keyless jobs take no key lock.
 */
export function lockOrderKey(queue: string, idempotencyKey: string | undefined): string {
  return idempotencyKey === undefined ? "" : `${queue}\u0000${idempotencyKey}`;
}

/** Orders items by `lockOrderKey` (stable: keyless jobs keep their order). */
export function compareLockOrder(a: { lockOrder: string }, b: { lockOrder: string }): number {
  return a.lockOrder < b.lockOrder ? -1 : a.lockOrder > b.lockOrder ? 1 : 0;
}

// What a submission does is declared once, in SQL (`insert_jobs`, 0003_engine.sql), and the SQL
// API `enqueue_many` calls the same function. It returns the rows it inserted in input order;
// an item whose key was taken inserts nothing and is looked up by the next statement.
const INSERT_JOBS = statement("insert_jobs", "SELECT * FROM {{schema}}.insert_jobs($1::jsonb)");

// A separate statement takes a fresh snapshot: it sees the key of a concurrent submitter whose
// commit our insert waited for. The job may be live or finished.
const FIND_BY_KEYS = statement(
  "find_jobs_by_keys",
  `SELECT a.* FROM unnest($1::text[], $2::text[]) AS k(queue, key)
   JOIN {{schema}}.job_keys r ON r.queue = k.queue AND r.key = k.key
   JOIN {{schema}}.all_jobs a ON a.id = r.job_id`,
);

/**
 * Inserts jobs in one statement (all or none); results come back in input order. A job whose
 * idempotency key is taken in its queue — by an earlier job, a concurrent submitter or an earlier
 * item of the same batch — returns that job with `duplicate: true`.
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
    key_mode: j.keyMode === "retain" ? undefined : j.keyMode,
    concurrency_key: j.concurrencyKey,
    request_id: j.requestId,
    trace_parent: j.traceParent,
    trace_state: j.traceState,
  }));
  const { rows } = await db.query<JobRow>({
    ...sql.bind(INSERT_JOBS),
    values: [JSON.stringify(input)],
  });
  rows.sort((a, b) => a.id - b.id);

  const out = new Array<EnqueuedJob | undefined>(jobs.length);
  const byKey = new Map<string, JobRow>();
  for (const row of rows) {
    if (row.idempotency_key !== null) byKey.set(keyOf(row.queue, row.idempotency_key), row);
  }
  // Keyless jobs are never skipped: they take the inserted keyless rows in id (= input) order.
  const keyless = rows.filter((row) => row.idempotency_key === null);
  let next = 0;
  const missing: number[] = [];
  for (const [i, job] of jobs.entries()) {
    if (job.idempotencyKey === undefined) {
      out[i] = { job: toJob(keyless[next++]!), duplicate: false };
      continue;
    }
    const key = keyOf(job.queue ?? DEFAULT_QUEUE, job.idempotencyKey);
    const row = byKey.get(key);
    if (row) {
      out[i] = { job: toJob(row), duplicate: false };
      byKey.delete(key); // a later item with the same key is a duplicate of this one
    } else {
      missing.push(i);
    }
  }
  if (missing.length > 0) await resolveDuplicates(db, sql, jobs, missing, out);
  return out as EnqueuedJob[];
}

async function resolveDuplicates(
  db: Queryable,
  sql: SchemaSql,
  jobs: readonly NewJob[],
  missing: readonly number[],
  out: (EnqueuedJob | undefined)[],
): Promise<void> {
  const queues = missing.map((i) => jobs[i]!.queue ?? DEFAULT_QUEUE);
  const keys = missing.map((i) => jobs[i]!.idempotencyKey!);
  const { rows } = await db.query<JobRow>({ ...sql.bind(FIND_BY_KEYS), values: [queues, keys] });
  const found = new Map(rows.map((row) => [keyOf(row.queue, row.idempotency_key!), row]));
  for (const [n, i] of missing.entries()) {
    const row = found.get(keyOf(queues[n]!, keys[n]!));
    if (!row) {
      // Only possible when the caller's transaction runs at REPEATABLE READ or above and the
      // original committed after its snapshot: the caller must retry the transaction.
      throw Object.assign(
        new Error(
          `idempotency key ${JSON.stringify(keys[n])} is taken in queue ${JSON.stringify(queues[n])} by a job this transaction cannot see; retry the transaction`,
        ),
        { code: "40001" },
      );
    }
    out[i] = { job: toJob(row), duplicate: true };
  }
}

function keyOf(queue: string, key: string): string {
  return `${queue}\u0000${key}`;
}
