/**
 * Recurring jobs: cron schedules with time zones, catch-up and overlap policies, exactly one job
 * per tick across any number of processes. See docs/schedules.md.
 */
export {
  CRON_SHORTCUTS,
  type CronSchedule,
  compileSchedule,
  nextTick,
  nextTicks,
  normalizeCronExpression,
  normalizeTimeZone,
  previousTicks,
} from "./cron.ts";
export {
  defineSchedule,
  definitionHash,
  type ScheduleDefinition,
  type SchedulePatch,
  SchedulePatchSchema,
  type ScheduleSpec,
  ScheduleSpecSchema,
  type TaskKnowledge,
} from "./definition.ts";
export { ScheduleLoop, type ScheduleLoopOptions, type ScheduleLoopState } from "./loop.ts";
export { SCHEDULE_METRICS, ScheduleMetrics } from "./metrics.ts";
export {
  MAX_COUNTED_TICKS,
  type PlanInput,
  type PlanOptions,
  planTicks,
  type SkippedRange,
  type TickPlan,
} from "./plan.ts";
export {
  DEFAULT_SCHEDULE_OWNER,
  type ReconcileOptions,
  type ReconcileResult,
  reconcileSchedules,
  schedulesOfTasks,
  type TaskScheduleSpec,
  type TaskWithSchedules,
} from "./reconcile.ts";
export {
  DEFAULT_SCHEDULE_SERVICE_OPTIONS,
  type RunDueSchedulesOptions,
  type RunDueSchedulesResult,
  runDueSchedules,
} from "./service.ts";
export { type PlanResult, planSchedules } from "./sql/planSchedules.ts";
export { KEEP_NEWEST_RUNS, pruneScheduleRuns } from "./sql/pruneRuns.ts";
export type { ListSchedulesFilter } from "./sql/rows.ts";
export {
  createSchedule,
  deleteSchedule,
  getSchedule,
  listSchedules,
  pauseSchedule,
  type RunJobOutcome,
  resumeSchedule,
  ScheduleConflictError,
  type ScheduleDetails,
  type SchedulePage,
  type ScheduleRunWithJob,
  ScheduleStore,
  type ScheduleWriteOptions,
  type TriggeredSchedule,
  triggerSchedule,
  updateSchedule,
} from "./store.ts";
export {
  CATCH_UP_LIMIT_RANGE,
  CATCH_UP_POLICIES,
  type CatchUpPolicy,
  OVERLAP_POLICIES,
  type OverlapPolicy,
  RUN_TRIGGERS,
  type RunTrigger,
  SCHEDULE_DEFAULTS,
  SCHEDULE_SOURCES,
  type Schedule,
  type ScheduleRun,
  type ScheduleSource,
  SKIP_REASONS,
  type SkipReason,
} from "./types.ts";
