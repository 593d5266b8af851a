import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import type { Job } from "./types.ts";

export type JobEventKind =
  | "enqueued"
  | "claimed"
  | "completed"
  | "attempt_failed"
  | "retry_scheduled"
  | "lease_expired"
  | "returned"
  | "outcome_ignored"
  | "cancelled"
  | "retried"
  | "failed"
  | "log";

/** One step of a job's life. Stored steps have an id; steps derived from the row have none. */
export interface JobEvent {
  id: number | null;
  jobId: number;
  kind: JobEventKind;
  attempt: number | null;
  workerId: string | null;
  message: string | null;
  data: unknown;
  at: Date;
}

interface JobEventRow {
  id: number;
  job_id: number;
  kind: JobEventKind;
  attempt: number | null;
  worker_id: string | null;
  message: string | null;
  data: unknown;
  at: Date;
}

const APPEND_LOGS = statement(
  "append_logs",
  `INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data)
   SELECT * FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::jsonb[])`,
);

export interface NewEvent {
  jobId: number;
  kind: JobEventKind;
  attempt: number | null;
  workerId: string | null;
  message: string;
  data?: unknown;
}

/** Stores events (handler log lines) in one statement. */
export async function appendEvents(
  db: Queryable,
  sql: SchemaSql,
  events: readonly NewEvent[],
): Promise<void> {
  if (events.length === 0) return;
  await db.query({
    ...sql.bind(APPEND_LOGS),
    values: [
      events.map((e) => e.jobId),
      events.map((e) => e.kind),
      events.map((e) => e.attempt),
      events.map((e) => e.workerId),
      events.map((e) => e.message),
      events.map((e) => (e.data === undefined ? null : JSON.stringify(e.data))),
    ],
  });
}

const LIST_EVENTS = statement(
  "list_events",
  `SELECT * FROM {{schema}}.job_events
   WHERE job_id = $1 AND id > $2
   ORDER BY id
   LIMIT $3`,
);

export interface TimelinePage {
  events: JobEvent[];
  /** Pass back as `after` for the next page; null on the last page. */
  nextCursor: number | null;
}

/**
 * A page of a job's timeline, oldest first. Stored events are paged by id; the steps the row
 * itself tells (enqueued, each claim, completion) are woven in where they belong: `enqueued` on
 * the first page, the claim of a failed attempt just before its failure, and the current
 * attempt's claim and completion on the last page.
 */
export async function jobTimeline(
  db: Queryable,
  sql: SchemaSql,
  job: Job,
  options: { after?: number; limit?: number } = {},
): Promise<TimelinePage> {
  const after = options.after ?? 0;
  const limit = options.limit ?? 100;
  const { rows } = await db.query<JobEventRow>({
    ...sql.bind(LIST_EVENTS),
    values: [job.id, after, limit + 1],
  });
  const more = rows.length > limit;
  const stored = rows.slice(0, limit).map(toEvent);
  const events: JobEvent[] = [];
  if (after === 0) events.push(derived(job, "enqueued", job.createdAt, null, null, "enqueued"));
  for (const event of stored) {
    const startedAt = startedAtOf(event);
    if (startedAt && CLAIM_ENDING_KINDS.has(event.kind)) {
      events.push(derived(job, "claimed", startedAt, event.attempt, event.workerId, "claimed"));
    }
    events.push(event);
  }
  if (!more) events.push(...currentAttempt(job));
  events.sort(
    (a, b) =>
      a.at.getTime() - b.at.getTime() || (a.attempt ?? 0) - (b.attempt ?? 0) || order(a) - order(b),
  );
  return { events, nextCursor: more ? (stored.at(-1)?.id ?? null) : null };
}

/** Stored steps that end an attempt: the claim they end is derived from their `startedAt`. */
const CLAIM_ENDING_KINDS = new Set<JobEventKind>(["attempt_failed", "lease_expired", "cancelled"]);

function currentAttempt(job: Job): JobEvent[] {
  const out: JobEvent[] = [];
  // The row's started_at belongs to the last claim; a failed attempt's claim is already told
  // by its attempt_failed event, so only a running or completed attempt is derived here.
  if (job.startedAt && (job.status === "running" || job.status === "completed")) {
    out.push(derived(job, "claimed", job.startedAt, job.attempts, job.leaseOwner, "claimed"));
  }
  if (job.status === "completed" && job.finishedAt) {
    out.push(derived(job, "completed", job.finishedAt, job.attempts, job.leaseOwner, "completed"));
  }
  return out;
}

function derived(
  job: Job,
  kind: JobEventKind,
  at: Date,
  attempt: number | null,
  workerId: string | null,
  message: string,
): JobEvent {
  return { id: null, jobId: job.id, kind, attempt, workerId, message, data: null, at };
}

function startedAtOf(event: JobEvent): Date | null {
  const value = (event.data as { startedAt?: unknown } | null)?.startedAt;
  return typeof value === "string" ? new Date(value) : null;
}

// Same-instant steps keep their causal order.
function order(event: JobEvent): number {
  if (event.kind === "enqueued") return 0;
  if (event.kind === "claimed") return 1;
  return 2 + (event.id ?? Number.MAX_SAFE_INTEGER / 2);
}

function toEvent(row: JobEventRow): JobEvent {
  return {
    id: row.id,
    jobId: row.job_id,
    kind: row.kind,
    attempt: row.attempt,
    workerId: row.worker_id,
    message: row.message,
    data: row.data,
    at: row.at,
  };
}
