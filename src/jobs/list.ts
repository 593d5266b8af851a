import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { type Job, type JobRow, type JobStatus, toJob } from "./types.ts";

// Newest first by id (ids grow with submission time), paged by keyset: `id < cursor` resumes
// exactly where the last page ended however many rows arrive meanwhile. Absent filters are
// NULL; Postgres folds `NULL IS NULL OR …` away when it plans with the values. It pages the
// primary key backwards; jobs_dead_idx (0002_api.sql) serves failed/cancelled listings.
const LIST_JOBS = statement(
  "list_jobs",
  `SELECT * FROM {{schema}}.jobs
   WHERE ($1::text IS NULL OR queue = $1)
     AND ($2::text[] IS NULL OR status = ANY ($2::text[]))
     AND ($3::text IS NULL OR task = $3)
     AND ($4::bigint IS NULL OR id < $4)
   ORDER BY id DESC
   LIMIT $5`,
);

export interface ListJobsFilter {
  queue?: string;
  statuses?: readonly JobStatus[];
  task?: string;
  /** Only jobs with an id below this (the last id of the previous page). */
  beforeId?: number;
  limit: number;
}

export interface JobListPage {
  jobs: Job[];
  /** The id to pass as `beforeId` for the next page; null on the last page. */
  nextBeforeId: number | null;
}

/** One page of jobs, newest first, filtered by queue, statuses and task. */
export async function listJobs(
  db: Queryable,
  sql: SchemaSql,
  filter: ListJobsFilter,
): Promise<JobListPage> {
  const { rows } = await db.query<JobRow>({
    ...sql.bind(LIST_JOBS),
    values: [
      filter.queue ?? null,
      filter.statuses ? [...filter.statuses] : null,
      filter.task ?? null,
      filter.beforeId ?? null,
      filter.limit + 1,
    ],
  });
  const more = rows.length > filter.limit;
  const jobs = rows.slice(0, filter.limit).map((row) => toJob(row));
  return { jobs, nextBeforeId: more ? (jobs.at(-1)?.id ?? null) : null };
}
