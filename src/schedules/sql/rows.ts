import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";
import type { ScheduleDefinition } from "../definition.ts";
import {
  type Schedule,
  type ScheduleRow,
  type ScheduleRun,
  type ScheduleRunRow,
  type ScheduleSource,
  toSchedule,
  toScheduleRun,
} from "../types.ts";

// The definition columns, in the order of the values of INSERT_SCHEDULE and UPDATE_SCHEDULE.
const definitionValues = (d: ScheduleDefinition): unknown[] => [
  d.name,
  d.cron,
  d.timeZone,
  d.task,
  JSON.stringify(d.payload),
  d.queue,
  d.priority,
  d.maxAttempts,
  d.timeoutMs,
  d.catchUp,
  d.catchUpLimit,
  d.overlap,
  d.hash,
];

// next_run_at stays NULL: the caller plans it with the database's clock (planSchedules).
const INSERT_SCHEDULE = statement(
  "schedules_insert",
  `INSERT INTO {{schema}}.schedules AS s
     (name, cron, time_zone, task, payload, queue, priority, max_attempts, timeout_ms,
      catch_up, catch_up_limit, overlap, definition_hash, paused, defined_by)
   VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
   ON CONFLICT (name) DO NOTHING
   RETURNING s.*`,
);

/** Inserts a schedule; null when the name is taken. */
export async function insertSchedule(
  db: Queryable,
  sql: SchemaSql,
  definition: ScheduleDefinition,
  options: { paused: boolean; definedBy: ScheduleSource },
): Promise<Schedule | null> {
  const { rows } = await db.query<ScheduleRow>({
    ...sql.bind(INSERT_SCHEDULE),
    values: [...definitionValues(definition), options.paused, options.definedBy],
  });
  return rows[0] ? toSchedule(rows[0]) : null;
}

// A changed expression or zone clears next_run_at (planned again from now: ticks of the new
// expression before the change were never due); other changes keep the schedule's place.
// `revision` guards the read-modify-write: a concurrent change makes this a no-op.
const UPDATE_SCHEDULE = statement(
  "schedules_update",
  `UPDATE {{schema}}.schedules s
   SET cron = $2, time_zone = $3, task = $4, payload = $5::jsonb, queue = $6, priority = $7,
       max_attempts = $8, timeout_ms = $9, catch_up = $10, catch_up_limit = $11, overlap = $12,
       definition_hash = $13, paused = coalesce($14, s.paused),
       next_run_at = CASE WHEN s.cron = $2 AND s.time_zone = $3 THEN s.next_run_at END,
       invalid_reason = CASE WHEN s.cron = $2 AND s.time_zone = $3 THEN s.invalid_reason END,
       revision = s.revision + 1, updated_at = now()
   WHERE s.name = $1 AND s.revision = $15
   RETURNING s.*`,
);

/** Writes a new definition if the row is still at `revision`; null otherwise. */
export async function updateScheduleRow(
  db: Queryable,
  sql: SchemaSql,
  definition: ScheduleDefinition,
  options: { revision: number; paused?: boolean },
): Promise<Schedule | null> {
  const { rows } = await db.query<ScheduleRow>({
    ...sql.bind(UPDATE_SCHEDULE),
    values: [...definitionValues(definition), options.paused ?? null, options.revision],
  });
  return rows[0] ? toSchedule(rows[0]) : null;
}

const GET_SCHEDULE = statement(
  "schedules_get",
  "SELECT s.*, now() AS db_now FROM {{schema}}.schedules s WHERE s.name = $1",
);

/** Reads a schedule (or null) with the database's clock. */
export async function getScheduleRow(
  db: Queryable,
  sql: SchemaSql,
  name: string,
): Promise<{ schedule: Schedule; now: Date } | null> {
  const { rows } = await db.query<ScheduleRow & { db_now: Date }>({
    ...sql.bind(GET_SCHEDULE),
    values: [name],
  });
  return rows[0] ? { schedule: toSchedule(rows[0]), now: rows[0].db_now } : null;
}

const LIST_SCHEDULES = statement(
  "schedules_list",
  `SELECT s.* FROM {{schema}}.schedules s
   WHERE ($1::text IS NULL OR s.name > $1)
     AND ($3::text IS NULL OR s.task = $3)
     AND ($4::boolean IS NULL OR s.paused = $4)
     AND ($5::text IS NULL OR s.defined_by = $5)
   ORDER BY s.name
   LIMIT $2`,
);

export interface ListSchedulesFilter {
  /** Names after this one (the previous page's last name). */
  after?: string;
  limit?: number;
  task?: string;
  paused?: boolean;
  definedBy?: ScheduleSource;
}

/** A page of schedules in name order. */
export async function listScheduleRows(
  db: Queryable,
  sql: SchemaSql,
  filter: ListSchedulesFilter = {},
): Promise<Schedule[]> {
  const { rows } = await db.query<ScheduleRow>({
    ...sql.bind(LIST_SCHEDULES),
    values: [
      filter.after ?? null,
      filter.limit ?? 50,
      filter.task ?? null,
      filter.paused ?? null,
      filter.definedBy ?? null,
    ],
  });
  return rows.map(toSchedule);
}

// Code-defined schedules belong to the deployments that declare them: removing one by hand would
// only last until the next worker start, so it is refused unless forced.
const DELETE_SCHEDULE = statement(
  "schedules_delete",
  `WITH target AS (
     SELECT s.name, s.defined_by FROM {{schema}}.schedules s WHERE s.name = $1
   ), deleted AS (
     DELETE FROM {{schema}}.schedules s
     WHERE s.name = $1 AND (s.defined_by <> 'code' OR $2::boolean)
     RETURNING s.*
   )
   SELECT t.defined_by AS found_defined_by, d.*
   FROM target t LEFT JOIN deleted d ON true`,
);

export type DeleteOutcome =
  | { status: "deleted"; schedule: Schedule }
  | { status: "not_found" }
  | { status: "defined_in_code" };

export async function deleteScheduleRow(
  db: Queryable,
  sql: SchemaSql,
  name: string,
  options: { force?: boolean } = {},
): Promise<DeleteOutcome> {
  const { rows } = await db.query<ScheduleRow & { found_defined_by: ScheduleSource }>({
    ...sql.bind(DELETE_SCHEDULE),
    values: [name, options.force ?? false],
  });
  const row = rows[0];
  if (!row) return { status: "not_found" };
  if (row.name === null) return { status: "defined_in_code" };
  return { status: "deleted", schedule: toSchedule(row) };
}

// Pausing keeps next_run_at: on resume, the ticks missed meanwhile meet the catch-up policy.
const SET_PAUSED = statement(
  "schedules_set_paused",
  "UPDATE {{schema}}.schedules s SET paused = $2 WHERE s.name = $1 RETURNING s.*",
);

export async function setSchedulePaused(
  db: Queryable,
  sql: SchemaSql,
  name: string,
  paused: boolean,
): Promise<Schedule | null> {
  const { rows } = await db.query<ScheduleRow>({
    ...sql.bind(SET_PAUSED),
    values: [name, paused],
  });
  return rows[0] ? toSchedule(rows[0]) : null;
}

const RECENT_RUNS = statement(
  "schedules_recent_runs",
  `SELECT r.* FROM {{schema}}.schedule_runs r
   WHERE r.schedule_name = $1
   ORDER BY r.id DESC
   LIMIT $2`,
);

/** A schedule's newest runs (fired, skipped, manual), newest first. */
export async function recentRuns(
  db: Queryable,
  sql: SchemaSql,
  name: string,
  limit: number,
): Promise<ScheduleRun[]> {
  const { rows } = await db.query<ScheduleRunRow>({
    ...sql.bind(RECENT_RUNS),
    values: [name, limit],
  });
  return rows.map(toScheduleRun);
}
