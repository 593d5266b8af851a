import { z } from "zod";
import { TimestampSchema } from "../api/schemas.ts";
import type { Job } from "../jobs/types.ts";
import type { ScheduleDetails, SchedulePage, TriggeredSchedule } from "./store.ts";
import {
  CATCH_UP_POLICIES,
  OVERLAP_POLICIES,
  RUN_TRIGGERS,
  SCHEDULE_SOURCES,
  type Schedule,
  type ScheduleRun,
  SKIP_REASONS,
} from "./types.ts";

// The JSON shapes of schedules, shared by the HTTP API (these schemas document its answers) and
// `pgwake schedules … --json`: camelCase, times as ISO 8601 strings.

const time = TimestampSchema;
/** A named schema or null (`.nullable()` on a named schema documents a type that refuses null). */
const orNull = <S extends z.ZodType>(schema: S) => z.union([schema, z.null()]);

export const ScheduleJsonSchema = z
  .object({
    name: z.string(),
    cron: z.string(),
    timeZone: z.string(),
    task: z.string(),
    payload: z.unknown(),
    queue: z.string().nullable(),
    priority: z.int().nullable(),
    maxAttempts: z.int().nullable(),
    timeoutMs: z.int().nullable(),
    catchUp: z.enum(CATCH_UP_POLICIES),
    catchUpLimit: z.int(),
    overlap: z.enum(OVERLAP_POLICIES),
    paused: z.boolean(),
    nextRunAt: orNull(time).meta({
      description: "The next tick to decide (in the past while catching up; null until planned).",
    }),
    lastTickAt: orNull(time),
    lastJobId: z.int().nullable(),
    invalidReason: z.string().nullable(),
    definedBy: z.enum(SCHEDULE_SOURCES),
    owner: z.string().nullable(),
    definitionHash: z.string().nullable(),
    revision: z.int(),
    ticksFired: z.int(),
    ticksSkipped: z.int(),
    ticksLate: z.int(),
    createdAt: time,
    updatedAt: time,
  })
  .meta({ id: "Schedule" });

const RunJobSchema = z
  .object({
    id: z.int(),
    status: z.string(),
    attempts: z.int(),
    maxAttempts: z.int(),
    createdAt: time,
    startedAt: orNull(time),
    finishedAt: orNull(time),
    lastError: z.unknown().nullable(),
  })
  .meta({ id: "ScheduleRunJob" });

export const ScheduleRunJsonSchema = z
  .object({
    id: z.int(),
    tickAt: time,
    trigger: z.enum(RUN_TRIGGERS),
    outcome: z.enum(["fired", "skipped"]),
    skipReason: z.enum(SKIP_REASONS).nullable(),
    ticks: z.int().meta({ description: "Ticks the row stands for (a skipped range)." }),
    lastTickAt: time,
    jobId: z.int().nullable(),
    lateMs: z.int().nullable(),
    decidedAt: time,
    job: orNull(RunJobSchema).meta({ description: "The job now; null when skipped or gone." }),
  })
  .meta({ id: "ScheduleRun" });

export const ScheduleDetailsJsonSchema = z
  .object({
    schedule: ScheduleJsonSchema,
    upcoming: z.array(time).meta({ description: "The expression's next times after now." }),
    runs: z.array(ScheduleRunJsonSchema).meta({ description: "Newest first." }),
  })
  .meta({ id: "ScheduleDetails" });

export const SchedulePageJsonSchema = z
  .object({ schedules: z.array(ScheduleJsonSchema), nextCursor: z.string().nullable() })
  .meta({ id: "SchedulePage" });

export const TriggerResultJsonSchema = z
  .object({
    job: z.object({
      id: z.int(),
      queue: z.string(),
      task: z.string(),
      status: z.string(),
      runAt: time,
      createdAt: time,
    }),
    run: orNull(ScheduleRunJsonSchema.omit({ job: true }).meta({ id: "ScheduleManualRun" })),
    duplicate: z.boolean(),
  })
  .meta({ id: "ScheduleTrigger" });

const iso = (date: Date | null): string | null => date?.toISOString() ?? null;

export function scheduleJson(schedule: Schedule): z.input<typeof ScheduleJsonSchema> {
  return {
    ...schedule,
    nextRunAt: iso(schedule.nextRunAt),
    lastTickAt: iso(schedule.lastTickAt),
    createdAt: schedule.createdAt.toISOString(),
    updatedAt: schedule.updatedAt.toISOString(),
  };
}

function runJson(run: ScheduleRun) {
  return {
    id: run.id,
    tickAt: run.tickAt.toISOString(),
    trigger: run.trigger,
    outcome: run.outcome,
    skipReason: run.skipReason,
    ticks: run.ticks,
    lastTickAt: run.lastTickAt.toISOString(),
    jobId: run.jobId,
    lateMs: run.lateMs,
    decidedAt: run.decidedAt.toISOString(),
  };
}

export function scheduleDetailsJson(
  details: ScheduleDetails,
): z.input<typeof ScheduleDetailsJsonSchema> {
  return {
    schedule: scheduleJson(details.schedule),
    upcoming: details.upcoming.map((d) => d.toISOString()),
    runs: details.runs.map((run) => ({
      ...runJson(run),
      job: run.job
        ? {
            ...run.job,
            id: Number(run.job.id),
            createdAt: run.job.createdAt.toISOString(),
            startedAt: iso(run.job.startedAt),
            finishedAt: iso(run.job.finishedAt),
          }
        : null,
    })),
  };
}

export function schedulePageJson(page: SchedulePage): z.input<typeof SchedulePageJsonSchema> {
  return { schedules: page.schedules.map(scheduleJson), nextCursor: page.nextCursor };
}

function jobSummary(job: Job) {
  return {
    id: Number(job.id),
    queue: job.queue,
    task: job.task,
    status: job.status,
    runAt: job.runAt.toISOString(),
    createdAt: job.createdAt.toISOString(),
  };
}

export function triggerResultJson(
  result: TriggeredSchedule,
): z.input<typeof TriggerResultJsonSchema> {
  return {
    job: jobSummary(result.job),
    run: result.run ? runJson(result.run) : null,
    duplicate: result.duplicate,
  };
}
