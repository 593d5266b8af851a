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
  `INSERT INTO {{schema}}.job_events (job_id, kind, attempt, worker_id, message, data, slot)
   SELECT e.*, s.slot
   FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::jsonb[])
     AS e(job_id, kind, attempt, worker_id, message, data),
     (SELECT {{schema}}.history_slot(now()) AS slot) s`,
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
  `SELECT id, job_id, kind, attempt, worker_id, message, data, at FROM {{schema}}.job_events
   WHERE job_id = $1 AND id > $2
   ORDER BY id
   LIMIT $3`,
);

// What places the derived claims: the events that end an attempt (with the attempt's start), the
// `retried` events (attempts count from 1 again after them), and the highest attempt seen up to
// the cursor since the last `retried` (the first event of a higher attempt follows its claim).
const TIMELINE_MARKS = statement(
  "timeline_marks",
  `SELECT e.id, e.kind, e.attempt, e.data->>'startedAt' AS started_at, NULL::integer AS seen
   FROM {{schema}}.job_events e
   WHERE e.job_id = $1 AND e.kind IN ('attempt_failed', 'lease_expired', 'cancelled', 'returned', 'retried')
   UNION ALL
   SELECT NULL, NULL, NULL, NULL, max(e.attempt)
   FROM {{schema}}.job_events e
   WHERE e.job_id = $1 AND e.id <= $2
     AND e.id > coalesce((SELECT max(r.id) FROM {{schema}}.job_events r
                          WHERE r.job_id = $1 AND r.kind = 'retried' AND r.id <= $2), 0)`,
);

export interface TimelinePage {
  events: JobEvent[];
  /** Pass back as `after` for the next page; null on the last page. */
  nextCursor: number | null;
}

/**
 * A page of a job's timeline, oldest first, at most `limit` steps. Stored events (in id order)
 * are woven with the steps the row tells without storing them: `enqueued` first, each attempt's
 * `claimed` just before the first stored event of that attempt (its time from the event that
 * ended the attempt, or the row's `started_at` for the current one), and at the end the current
 * attempt's `claimed` (when nothing of it is stored yet) and `completed`. Every step keeps its
 * place as the job goes on, so a cursor stays valid. The cursor is opaque: `4·id + k + 1`, `id`
 * the last stored event given, `k` how far past it the page went (1: the next event's claim;
 * 2, 3: one or two tail steps); 0 is the start.
 */
export async function jobTimeline(
  db: Queryable,
  sql: SchemaSql,
  job: Job,
  options: { after?: number; limit?: number } = {},
): Promise<TimelinePage> {
  const limit = Math.max(1, options.limit ?? 100);
  const start = (options.after ?? 0) <= 0;
  const position = start ? 0 : options.after! - 1;
  let lastId = Math.floor(position / 4);
  const skip = position % 4;
  const [{ rows }, marks] = await Promise.all([
    db.query<JobEventRow>({ ...sql.bind(LIST_EVENTS), values: [job.id, lastId, limit + 1] }),
    db.query<{
      id: number | null;
      kind: JobEventKind | null;
      attempt: number | null;
      started_at: string | null;
      seen: number | null;
    }>({ ...sql.bind(TIMELINE_MARKS), values: [job.id, lastId] }),
  ]);
  const ends = marks.rows.filter((m) => m.id !== null && m.kind !== "retried");
  const retried = marks.rows.filter((m) => m.kind === "retried").map((m) => m.id!);
  let seen = marks.rows.find((m) => m.id === null)?.seen ?? 0;
  /** When attempt `attempt` (of the run after the last `retried` before `id`) started. */
  const startOf = (attempt: number, id: number): Date | null => {
    const run = Math.max(0, ...retried.filter((r) => r < id));
    const next = Math.min(Number.POSITIVE_INFINITY, ...retried.filter((r) => r > id));
    const end = ends.find((m) => m.attempt === attempt && m.id! > run && m.id! < next);
    if (end?.started_at) return new Date(end.started_at);
    const current = next === Number.POSITIVE_INFINITY && attempt === job.attempts;
    return current && job.startedAt ? job.startedAt : null;
  };

  const events: JobEvent[] = [];
  if (start) events.push(derived(job, "enqueued", job.createdAt, null, null, "enqueued"));
  let k = 0;
  let consumed = 0;
  for (const [i, row] of rows.entries()) {
    const event = toEvent(row);
    if (event.kind === "retried") seen = 0;
    const attempt = event.attempt ?? 0;
    if (event.kind !== "retried" && attempt > seen) {
      seen = attempt;
      const at = startOf(attempt, event.id!);
      if (at && !(i === 0 && skip >= 1)) {
        if (events.length >= limit) return page(events, lastId, k);
        events.push(derived(job, "claimed", at, attempt, event.workerId, "claimed"));
        k = 1;
      }
    }
    if (events.length >= limit) return page(events, lastId, k);
    events.push(event);
    lastId = event.id!;
    k = 0;
    consumed++;
  }
  if (consumed < rows.length) return page(events, lastId, k);
  const tail: JobEvent[] = [];
  if (job.startedAt && (job.status === "running" || job.status === "completed")) {
    if (job.attempts > seen) {
      tail.push(derived(job, "claimed", job.startedAt, job.attempts, job.leaseOwner, "claimed"));
    }
    if (job.status === "completed" && job.finishedAt) {
      tail.push(
        derived(job, "completed", job.finishedAt, job.attempts, job.leaseOwner, "completed"),
      );
    }
  }
  let given = rows.length === 0 && skip >= 2 ? skip - 1 : 0;
  for (const step of tail.slice(given)) {
    if (events.length >= limit) return page(events, lastId, 1 + given);
    events.push(step);
    given++;
  }
  return { events, nextCursor: null };
}

function page(events: JobEvent[], lastId: number, k: number): TimelinePage {
  return { events, nextCursor: 4 * lastId + k + 1 };
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
