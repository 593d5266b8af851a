import type { SchemaSql } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { PgwakeError, type SerializedError } from "../errors.ts";
import { getJob } from "../jobs/control.ts";
import type { Job, JobStatus } from "../jobs/types.ts";
import { compileSchedule, nextTicks } from "./cron.ts";
import {
  defineSchedule,
  parseOrThrow,
  type SchedulePatch,
  SchedulePatchSchema,
  type ScheduleSpec,
  type TaskKnowledge,
} from "./definition.ts";
import { planSchedules } from "./sql/planSchedules.ts";
import {
  deleteScheduleRow,
  getScheduleRow,
  insertSchedule,
  type ListSchedulesFilter,
  listScheduleRows,
  recentRuns,
  setSchedulePaused,
  updateScheduleRow,
} from "./sql/rows.ts";
import { triggerScheduleRow } from "./sql/triggerSchedule.ts";
import type { Schedule, ScheduleRun, ScheduleSource } from "./types.ts";

/**
 * A schedule operation refused because of the schedule's state: the name is taken, the
 * schedule is defined in code, or it changed under a concurrent update. Its code is
 * SCHEDULE_CONFLICT, `reason` says which; the API answers 409.
 */
export class ScheduleConflictError extends PgwakeError {
  readonly reason: "exists" | "defined_in_code" | "changed";

  constructor(reason: ScheduleConflictError["reason"], message: string, details?: unknown) {
    super("SCHEDULE_CONFLICT", message, { details: details ?? { reason } });
    this.name = "ScheduleConflictError";
    this.reason = reason;
  }
}

/** How library operations validate and label what they write. */
export interface ScheduleWriteOptions extends TaskKnowledge {
  /** Recorded as who defined a created schedule (default "library"). */
  definedBy?: Exclude<ScheduleSource, "code" | "sql">;
}

/**
 * Creates a schedule and plans its first tick (the first after now, by the database's clock).
 * Throws INVALID_SCHEDULE with every bad field (bad expression, unknown zone…), INVALID_PAYLOAD,
 * UNKNOWN_TASK (with `requireKnownTask`), or ScheduleConflictError when the name is taken.
 */
export async function createSchedule(
  db: Queryable,
  sql: SchemaSql,
  spec: ScheduleSpec,
  options: ScheduleWriteOptions = {},
): Promise<Schedule> {
  const definition = defineSchedule(spec, options);
  const inserted = await insertSchedule(db, sql, definition, {
    paused: spec.paused ?? false,
    definedBy: options.definedBy ?? "library",
  });
  if (!inserted) {
    throw new ScheduleConflictError("exists", `a schedule named "${definition.name}" exists`);
  }
  return planned(db, sql, inserted);
}

async function planned(db: Queryable, sql: SchemaSql, schedule: Schedule): Promise<Schedule> {
  if (schedule.nextRunAt !== null || schedule.paused) return schedule;
  await planSchedules(db, sql, { names: [schedule.name], limit: 1 });
  return (await getScheduleRow(db, sql, schedule.name))?.schedule ?? schedule;
}

/** The outcome of a run's job, read through getJob (null once the job is gone). */
export interface RunJobOutcome {
  id: number;
  status: JobStatus;
  attempts: number;
  maxAttempts: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  lastError: SerializedError | null;
}

export interface ScheduleRunWithJob extends ScheduleRun {
  /** The run's job as it is now; null for a skipped run or a job no longer stored. */
  job: RunJobOutcome | null;
}

export interface ScheduleDetails {
  schedule: Schedule;
  /** The expression's next times after now (none for an invalid schedule). */
  upcoming: Date[];
  /** Newest runs first, each with its job's outcome. */
  runs: ScheduleRunWithJob[];
}

/** A schedule with its next times and its newest runs and their jobs; null when unknown. */
export async function getSchedule(
  db: Queryable,
  sql: SchemaSql,
  name: string,
  options: { runs?: number; upcoming?: number } = {},
): Promise<ScheduleDetails | null> {
  const found = await getScheduleRow(db, sql, name);
  if (!found) return null;
  const { schedule, now } = found;
  const runs = await recentRuns(db, sql, name, options.runs ?? 10);
  const jobs = await Promise.all(
    runs.map((run) => (run.jobId === null ? null : getJob(db, sql, run.jobId))),
  );
  return {
    schedule,
    upcoming: upcomingTimes(schedule, now, options.upcoming ?? 5),
    runs: runs.map((run, i) => ({ ...run, job: jobs[i] ? outcomeOf(jobs[i]!) : null })),
  };
}

function upcomingTimes(schedule: Schedule, now: Date, count: number): Date[] {
  if (schedule.invalidReason !== null || count <= 0) return [];
  try {
    return nextTicks(compileSchedule(schedule.cron, schedule.timeZone), now, count);
  } catch {
    return [];
  }
}

function outcomeOf(job: Job): RunJobOutcome {
  return {
    id: job.id,
    status: job.status,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    createdAt: job.createdAt,
    startedAt: job.startedAt,
    finishedAt: job.finishedAt,
    lastError: job.lastError,
  };
}

export interface SchedulePage {
  schedules: Schedule[];
  /** Give as `after` for the next page; null on the last page. */
  nextCursor: string | null;
}

/** A page of schedules in name order. */
export async function listSchedules(
  db: Queryable,
  sql: SchemaSql,
  filter: ListSchedulesFilter = {},
): Promise<SchedulePage> {
  const limit = filter.limit ?? 50;
  const rows = await listScheduleRows(db, sql, { ...filter, limit: limit + 1 });
  const schedules = rows.slice(0, limit);
  return {
    schedules,
    nextCursor: rows.length > limit ? schedules[schedules.length - 1]!.name : null,
  };
}

const UPDATE_ATTEMPTS = 3;

/**
 * Changes a schedule's settings (fields left out keep their value; `null` resets a job option).
 * A changed expression or zone starts from its next tick after now; other changes keep the
 * schedule's place. A code-defined schedule may only be paused or resumed here (its definition
 * belongs to the deployments declaring it): anything else throws ScheduleConflictError.
 * Returns null when there is no such schedule.
 */
export async function updateSchedule(
  db: Queryable,
  sql: SchemaSql,
  name: string,
  patch: SchedulePatch,
  options: ScheduleWriteOptions = {},
): Promise<Schedule | null> {
  const changes = parseOrThrow(SchedulePatchSchema, patch, "schedule update");
  const changed = Object.keys(changes).filter(
    (key) => changes[key as keyof typeof changes] !== undefined,
  );
  for (let attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
    const found = await getScheduleRow(db, sql, name);
    if (!found) return null;
    const current = found.schedule;
    if (changed.every((key) => key === "paused")) {
      return changes.paused === undefined
        ? current
        : setSchedulePaused(db, sql, name, changes.paused);
    }
    if (current.definedBy === "code") {
      throw new ScheduleConflictError(
        "defined_in_code",
        `schedule "${name}" is defined in code (owner "${current.owner}"): change it there; only pause and resume apply here`,
      );
    }
    const definition = defineSchedule(
      {
        name,
        cron: changes.cron ?? current.cron,
        timeZone: changes.timeZone ?? current.timeZone,
        task: changes.task ?? current.task,
        payload: changes.payload !== undefined ? changes.payload : current.payload,
        queue: changes.queue !== undefined ? changes.queue : current.queue,
        priority: changes.priority !== undefined ? changes.priority : current.priority,
        maxAttempts: changes.maxAttempts !== undefined ? changes.maxAttempts : current.maxAttempts,
        timeoutMs: changes.timeoutMs !== undefined ? changes.timeoutMs : current.timeoutMs,
        catchUp: changes.catchUp ?? current.catchUp,
        catchUpLimit: changes.catchUpLimit ?? current.catchUpLimit,
        overlap: changes.overlap ?? current.overlap,
      },
      options,
    );
    const updated = await updateScheduleRow(db, sql, definition, {
      revision: current.revision,
      ...(changes.paused !== undefined ? { paused: changes.paused } : {}),
    });
    if (updated) return planned(db, sql, updated);
  }
  throw new ScheduleConflictError(
    "changed",
    `schedule "${name}" kept changing while being updated; try again`,
  );
}

/**
 * Deletes a schedule and its run records (its jobs stay). A code-defined schedule is refused
 * with ScheduleConflictError unless `force`: the next worker start would bring it back.
 * Returns the deleted schedule, or null when there was none.
 */
export async function deleteSchedule(
  db: Queryable,
  sql: SchemaSql,
  name: string,
  options: { force?: boolean } = {},
): Promise<Schedule | null> {
  const outcome = await deleteScheduleRow(db, sql, name, options);
  if (outcome.status === "not_found") return null;
  if (outcome.status === "defined_in_code") {
    throw new ScheduleConflictError(
      "defined_in_code",
      `schedule "${name}" is defined in code: remove it there (a worker start would recreate it), or pause it`,
    );
  }
  return outcome.schedule;
}

/** Stops a schedule's ticks until resumed; null when there is no such schedule. */
export function pauseSchedule(
  db: Queryable,
  sql: SchemaSql,
  name: string,
): Promise<Schedule | null> {
  return setSchedulePaused(db, sql, name, true);
}

/**
 * Resumes a schedule. Ticks that came while it was paused are missed ticks: its catch-up policy
 * decides them on the next pass. Null when there is no such schedule.
 */
export async function resumeSchedule(
  db: Queryable,
  sql: SchemaSql,
  name: string,
): Promise<Schedule | null> {
  const schedule = await setSchedulePaused(db, sql, name, false);
  return schedule ? planned(db, sql, schedule) : null;
}

export interface TriggeredSchedule {
  job: Job;
  run: ScheduleRun | null;
  /** The idempotency key was used before: `job` is that trigger's job, no new run recorded. */
  duplicate: boolean;
}

/**
 * Makes one job of the schedule now (a manual run), paused or not, whatever its overlap policy.
 * With `idempotencyKey`, repeating the call returns the first call's job. Null when unknown.
 */
export async function triggerSchedule(
  db: Queryable,
  sql: SchemaSql,
  name: string,
  options: { idempotencyKey?: string } = {},
): Promise<TriggeredSchedule | null> {
  if (options.idempotencyKey !== undefined && !/^.{1,128}$/su.test(options.idempotencyKey)) {
    throw new PgwakeError("INVALID_OPTIONS", "an idempotency key has 1 to 128 characters");
  }
  const triggered = await triggerScheduleRow(db, sql, name, options.idempotencyKey);
  if (!triggered) return null;
  const job = await getJob(db, sql, triggered.jobId);
  if (!job) {
    // Deleted between the trigger and this read (a retention pass, an operator): nothing to show.
    throw new ScheduleConflictError(
      "changed",
      `job ${triggered.jobId} of schedule "${name}" was deleted meanwhile; try again`,
    );
  }
  return { job, run: triggered.run, duplicate: triggered.duplicate };
}

/**
 * The schedule operations over one database handle, for `Pgwake` to expose (e.g. as
 * `pgwake.schedules`), the API and the CLI.
 */
export class ScheduleStore {
  readonly db: Queryable;
  readonly sql: SchemaSql;
  private readonly writeOptions: ScheduleWriteOptions;

  constructor(db: Queryable, sql: SchemaSql, options: ScheduleWriteOptions = {}) {
    this.db = db;
    this.sql = sql;
    this.writeOptions = options;
  }

  create(spec: ScheduleSpec): Promise<Schedule> {
    return createSchedule(this.db, this.sql, spec, this.writeOptions);
  }

  get(
    name: string,
    options?: { runs?: number; upcoming?: number },
  ): Promise<ScheduleDetails | null> {
    return getSchedule(this.db, this.sql, name, options);
  }

  list(filter?: ListSchedulesFilter): Promise<SchedulePage> {
    return listSchedules(this.db, this.sql, filter);
  }

  update(name: string, patch: SchedulePatch): Promise<Schedule | null> {
    return updateSchedule(this.db, this.sql, name, patch, this.writeOptions);
  }

  delete(name: string, options?: { force?: boolean }): Promise<Schedule | null> {
    return deleteSchedule(this.db, this.sql, name, options);
  }

  pause(name: string): Promise<Schedule | null> {
    return pauseSchedule(this.db, this.sql, name);
  }

  resume(name: string): Promise<Schedule | null> {
    return resumeSchedule(this.db, this.sql, name);
  }

  trigger(name: string, options?: { idempotencyKey?: string }): Promise<TriggeredSchedule | null> {
    return triggerSchedule(this.db, this.sql, name, options);
  }
}
