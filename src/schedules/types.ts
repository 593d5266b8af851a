/**
 * The facts of recurring jobs, declared once: policies, their defaults, skip reasons, who may
 * define a schedule. The migration (db/migrations/0004_schedules.sql) repeats them in CHECK
 * constraints and column defaults; test/integration/schedules-store.test.ts checks that both agree.
 */

/** What happens to ticks missed while no process could fire them (downtime, a pause). */
export const CATCH_UP_POLICIES = ["skip", "once", "each"] as const;
export type CatchUpPolicy = (typeof CATCH_UP_POLICIES)[number];

/** Whether a tick fires while the schedule's previous job has not finished. */
export const OVERLAP_POLICIES = ["allow", "skip"] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

/**
 * Why a tick made no job: `missed` (catch-up `skip`), `merged` (catch-up `once`: folded into the
 * one run), `beyond_limit` (catch-up `each`: older than the bound), `overlap` (the previous run was
 * still pending or running, or an earlier tick of the same pass took its place).
 */
export const SKIP_REASONS = ["missed", "merged", "beyond_limit", "overlap"] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

/** Who defined a schedule; `code` schedules are owned by the deployments that declare them. */
export const SCHEDULE_SOURCES = ["code", "http", "cli", "library", "sql"] as const;
export type ScheduleSource = (typeof SCHEDULE_SOURCES)[number];

/** How a run came about: the cron expression, or a person asking for one now. */
export const RUN_TRIGGERS = ["cron", "manual"] as const;
export type RunTrigger = (typeof RUN_TRIGGERS)[number];

/** Defaults of a schedule's settings (the migration's column defaults say the same). */
export const SCHEDULE_DEFAULTS = {
  timeZone: "UTC",
  catchUp: "once",
  catchUpLimit: 100,
  overlap: "allow",
} as const satisfies {
  timeZone: string;
  catchUp: CatchUpPolicy;
  catchUpLimit: number;
  overlap: OverlapPolicy;
};

/** Bounds of `catchUpLimit`: how many missed ticks `each` may run after downtime. */
export const CATCH_UP_LIMIT_RANGE = { min: 1, max: 1000 } as const;

/** A schedule as stored, in camelCase. */
export interface Schedule {
  name: string;
  cron: string;
  timeZone: string;
  task: string;
  payload: unknown;
  /** Job options; null takes the engine's default when a job is made. */
  queue: string | null;
  priority: number | null;
  maxAttempts: number | null;
  timeoutMs: number | null;
  catchUp: CatchUpPolicy;
  catchUpLimit: number;
  overlap: OverlapPolicy;
  paused: boolean;
  /** The next tick to decide; in the past while catching up, null until the service plans it. */
  nextRunAt: Date | null;
  /** The latest tick decided (fired or skipped). */
  lastTickAt: Date | null;
  /** The latest job this schedule made (a tick or a manual trigger). */
  lastJobId: number | null;
  /** Set when the service cannot evaluate the expression or zone (e.g. a bad row from SQL). */
  invalidReason: string | null;
  definedBy: ScheduleSource;
  /** For `code` schedules: the group of deployments that declares it. */
  owner: string | null;
  /** Hash of the definition (null for rows written by plain SQL). */
  definitionHash: string | null;
  /** Bumped on every change of the definition; guards read-modify-write updates. */
  revision: number;
  ticksFired: number;
  ticksSkipped: number;
  ticksLate: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface ScheduleRow {
  name: string;
  cron: string;
  time_zone: string;
  task: string;
  payload: unknown;
  queue: string | null;
  priority: number | null;
  max_attempts: number | null;
  timeout_ms: number | null;
  catch_up: CatchUpPolicy;
  catch_up_limit: number;
  overlap: OverlapPolicy;
  paused: boolean;
  next_run_at: Date | null;
  last_tick_at: Date | null;
  last_job_id: string | number | null;
  invalid_reason: string | null;
  defined_by: ScheduleSource;
  owner: string | null;
  definition_hash: string | null;
  revision: number;
  ticks_fired: string | number;
  ticks_skipped: string | number;
  ticks_late: string | number;
  created_at: Date;
  updated_at: Date;
}

export function toSchedule(row: ScheduleRow): Schedule {
  return {
    name: row.name,
    cron: row.cron,
    timeZone: row.time_zone,
    task: row.task,
    payload: row.payload,
    queue: row.queue,
    priority: row.priority,
    maxAttempts: row.max_attempts,
    timeoutMs: row.timeout_ms,
    catchUp: row.catch_up,
    catchUpLimit: row.catch_up_limit,
    overlap: row.overlap,
    paused: row.paused,
    nextRunAt: row.next_run_at,
    lastTickAt: row.last_tick_at,
    lastJobId: row.last_job_id === null ? null : Number(row.last_job_id),
    invalidReason: row.invalid_reason,
    definedBy: row.defined_by,
    owner: row.owner,
    definitionHash: row.definition_hash,
    revision: row.revision,
    ticksFired: Number(row.ticks_fired),
    ticksSkipped: Number(row.ticks_skipped),
    ticksLate: Number(row.ticks_late),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** One decision about a schedule's tick (or a manual trigger). */
export interface ScheduleRun {
  id: number;
  schedule: string;
  /** The tick's time (for a manual run: when it was triggered); a skipped range's first tick. */
  tickAt: Date;
  trigger: RunTrigger;
  outcome: "fired" | "skipped";
  skipReason: SkipReason | null;
  /** How many ticks the row stands for: 1, or a skipped range (counted up to 1000). */
  ticks: number;
  /** A skipped range's last tick (equal to `tickAt` for a single tick). */
  lastTickAt: Date;
  jobId: number | null;
  /** When the run was decided minus the tick; negative when its job was made ahead of time. */
  lateMs: number | null;
  decidedAt: Date;
}

export interface ScheduleRunRow {
  id: string | number;
  schedule_name: string;
  tick_at: Date;
  trigger: RunTrigger;
  outcome: "fired" | "skipped";
  skip_reason: SkipReason | null;
  ticks: number;
  last_tick_at: Date;
  job_id: string | number | null;
  late_ms: string | number | null;
  decided_at: Date;
}

export function toScheduleRun(row: ScheduleRunRow): ScheduleRun {
  return {
    id: Number(row.id),
    schedule: row.schedule_name,
    tickAt: row.tick_at,
    trigger: row.trigger,
    outcome: row.outcome,
    skipReason: row.skip_reason,
    ticks: row.ticks,
    lastTickAt: row.last_tick_at,
    jobId: row.job_id === null ? null : Number(row.job_id),
    lateMs: row.late_ms === null ? null : Number(row.late_ms),
    decidedAt: row.decided_at,
  };
}
