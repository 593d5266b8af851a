import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { FINISHED_JOB, LIVE_JOB } from "./history.ts";
import { type Job, type JobRow, type JobStatus, TERMINAL_STATUSES, toJob } from "./types.ts";

// Newest first by id (ids grow with submission time), paged by keyset: `id < cursor` resumes
// exactly where the last page ended however many rows arrive meanwhile. Live and finished jobs
// are read from their own tables and merged; a branch whose statuses cannot match is skipped
// (a one-time filter on the parameters). Absent filters are NULL.
const LIST_JOBS = statement(
  "list_jobs",
  `SELECT * FROM (
     (SELECT ${LIVE_JOB} FROM {{schema}}.jobs j
      LEFT JOIN {{schema}}.workers w ON w.id = j.lease_owner
      WHERE ($2::text[] IS NULL OR $2::text[] && ARRAY['scheduled', 'pending', 'running', 'retrying'])
        AND ($1::text IS NULL OR j.queue = $1)
        AND ($2::text[] IS NULL OR j.status = ANY ($2::text[]))
        AND ($3::text IS NULL OR j.task = $3)
        AND ($4::bigint IS NULL OR j.id < $4)
        AND ($6::timestamptz IS NULL OR j.created_at >= $6)
        AND ($7::timestamptz IS NULL OR j.created_at < $7)
      ORDER BY j.id DESC
      LIMIT $5)
     UNION ALL
     (SELECT ${FINISHED_JOB} FROM {{schema}}.job_history h
      WHERE ($2::text[] IS NULL OR $2::text[] && ARRAY['completed', 'failed', 'cancelled'])
        AND ($1::text IS NULL OR h.queue = $1)
        AND ($2::text[] IS NULL OR h.status = ANY ($2::text[]))
        AND ($3::text IS NULL OR h.task = $3)
        AND ($4::bigint IS NULL OR h.id < $4)
        AND ($6::timestamptz IS NULL OR h.created_at >= $6)
        AND ($7::timestamptz IS NULL OR h.created_at < $7)
      ORDER BY h.id DESC
      LIMIT $5)
   ) page
   ORDER BY id DESC
   LIMIT $5`,
);

// The dead-letter set of one queue (failed and cancelled jobs) through its own small index.
const LIST_DEAD_JOBS = statement(
  "list_dead_jobs",
  `SELECT ${FINISHED_JOB} FROM {{schema}}.job_history h
   WHERE h.queue = $1 AND h.status <> 'completed' AND h.status = ANY ($2::text[])
     AND ($3::text IS NULL OR h.task = $3)
     AND ($4::bigint IS NULL OR h.id < $4)
     AND ($6::timestamptz IS NULL OR h.created_at >= $6)
     AND ($7::timestamptz IS NULL OR h.created_at < $7)
   ORDER BY h.id DESC
   LIMIT $5`,
);

export interface ListJobsFilter {
  queue?: string;
  statuses?: readonly JobStatus[];
  task?: string;
  /** Only jobs with an id below this (the last id of the previous page). */
  beforeId?: number;
  /** Only jobs submitted at or after this time. */
  createdAfter?: Date;
  /** Only jobs submitted before this time. */
  createdBefore?: Date;
  limit: number;
}

export interface JobListPage {
  jobs: Job[];
  /** The id to pass as `beforeId` for the next page; null on the last page. */
  nextBeforeId: number | null;
}

/** One page of jobs, live or finished, newest first, filtered by queue, statuses, task, time. */
export async function listJobs(
  db: Queryable,
  sql: SchemaSql,
  filter: ListJobsFilter,
): Promise<JobListPage> {
  const statuses = filter.statuses ? [...filter.statuses] : null;
  const deadLetters =
    filter.queue !== undefined &&
    statuses !== null &&
    statuses.length > 0 &&
    statuses.every((s) => s === "failed" || s === "cancelled");
  const { rows } = await db.query<JobRow>({
    ...sql.bind(deadLetters ? LIST_DEAD_JOBS : LIST_JOBS),
    values: [
      filter.queue ?? null,
      statuses,
      filter.task ?? null,
      filter.beforeId ?? null,
      filter.limit + 1,
      filter.createdAfter?.toISOString() ?? null,
      filter.createdBefore?.toISOString() ?? null,
    ],
  });
  const more = rows.length > filter.limit;
  const jobs = rows.slice(0, filter.limit).map((row) => toJob(row));
  return { jobs, nextBeforeId: more ? (jobs.at(-1)?.id ?? null) : null };
}

/** Whether a status is one of finished jobs. */
export function isTerminal(status: JobStatus): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}
