/**
 * pgwake: a job queue that lives in PostgreSQL.
 *
 * @example
 * const pgwake = new Pgwake({ connectionString, tasks: [sendEmail] });
 * await pgwake.migrate();
 * await pgwake.enqueue("send-email", { to: "a@example.com" });
 * await pgwake.worker({ concurrency: 8 }).start();
 */
export {
  type EnqueueOptions,
  type NewJobOf,
  type PayloadsOf,
  Pgwake,
  type PgwakeOptions,
} from "./client.ts";
export { migrate, schemaState } from "./db/migrate.ts";
export { createPool } from "./db/pool.ts";
export { isTransientError } from "./db/transient.ts";
export {
  type ErrorCode,
  PermanentError,
  PgwakeError,
  type SerializedError,
  serializeError,
} from "./errors.ts";
export { type BackoffOptions, DEFAULT_BACKOFF, retryDelayMs } from "./jobs/backoff.ts";
export type { CancelledJob, QueueSettings } from "./jobs/control.ts";
export type { EnqueuedJob, NewJob } from "./jobs/enqueue.ts";
export type { JobEvent, JobEventKind, TimelinePage } from "./jobs/events.ts";
export type {
  KeyFlow,
  LimitsSource,
  QueueFlow,
  QueueLimits,
  WaitReason,
} from "./jobs/flowControl.ts";
export type { JobListPage, ListJobsFilter } from "./jobs/list.ts";
export type { QueueFlowStats, QueueStats, QueueWorker } from "./jobs/queueStats.ts";
export { JOB_STATUSES, type Job, type JobStatus, TERMINAL_STATUSES } from "./jobs/types.ts";
export { createLogger, type Logger } from "./logger.ts";
export {
  defineSchedule,
  type Schedule,
  type ScheduleDetails,
  type SchedulePage,
  type SchedulePatch,
  type ScheduleRun,
  type ScheduleSpec,
  ScheduleStore,
  type TaskScheduleSpec,
} from "./schedules/index.ts";
export { SETTING_DEFAULTS, type UnknownTaskPolicy } from "./settings.ts";
export {
  type AnyTaskDefinition,
  type AnyTaskReference,
  defineTask,
  defineTaskReference,
  type JobContext,
  type KnownTask,
  type TaskDefinition,
  type TaskHandler,
  type TaskInput,
  type TaskPayload,
  type TaskPayloads,
  type TaskReference,
  TaskRegistry,
} from "./tasks.ts";
export { serveWorkerHealth } from "./worker/healthServer.ts";
export {
  type QueueSlots,
  WORKER_DEFAULTS,
  Worker,
  type WorkerOptions,
  type WorkerState,
} from "./worker/worker.ts";
