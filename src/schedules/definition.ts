import { createHash } from "node:crypto";
import { z } from "zod";
import { PgwakeError } from "../errors.ts";
import type { NewJob } from "../jobs/enqueue.ts";
import { findUnstorable } from "../jobs/storable.ts";
import type { TaskRegistry } from "../tasks.ts";
import { compileSchedule, normalizeCronExpression, normalizeTimeZone } from "./cron.ts";
import {
  CATCH_UP_LIMIT_RANGE,
  CATCH_UP_POLICIES,
  type CatchUpPolicy,
  OVERLAP_POLICIES,
  type OverlapPolicy,
  SCHEDULE_DEFAULTS,
} from "./types.ts";

// Names follow the database's checks, so whatever passes here is also accepted by Postgres.
const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
const NAME_RULE = "1-128 of A-Z a-z 0-9 _ . : -";
const MAX_INT32 = 2_147_483_647;

const cronField = z
  .string()
  .max(256)
  .superRefine((value, ctx) => {
    try {
      compileSchedule(normalizeCronExpression(value));
    } catch (error) {
      ctx.addIssue({ code: "custom", message: reasonOf(error) });
    }
  })
  .meta({
    description:
      "5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a shortcut (@hourly, @daily, @weekly, @monthly, @yearly).",
    example: "30 2 * * *",
  });

const timeZoneField = z
  .string()
  .max(64)
  .superRefine((value, ctx) => {
    try {
      normalizeTimeZone(value);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: reasonOf(error) });
    }
  })
  .meta({ description: "IANA time zone the expression is read in.", example: "Europe/Berlin" });

/** The settings of a schedule, each optional (the shape of an update). */
export const ScheduleFieldsSchema = z.strictObject({
  cron: cronField,
  timeZone: timeZoneField.optional(),
  task: z.string().regex(NAME, `a task name: ${NAME_RULE}`),
  payload: z.unknown().optional().meta({ description: "The payload of every job it makes." }),
  queue: z.string().regex(NAME, `a queue name: ${NAME_RULE}`).nullable().optional(),
  priority: z.int().min(-1000).max(1000).nullable().optional(),
  maxAttempts: z.int().min(1).max(1000).nullable().optional(),
  timeoutMs: z.int().min(1).max(MAX_INT32).nullable().optional(),
  catchUp: z
    .enum(CATCH_UP_POLICIES)
    .optional()
    .meta({
      description: `Missed ticks after downtime or a pause: skip them, run once for all, or run each up to catchUpLimit (default ${SCHEDULE_DEFAULTS.catchUp}).`,
    }),
  catchUpLimit: z
    .int()
    .min(CATCH_UP_LIMIT_RANGE.min)
    .max(CATCH_UP_LIMIT_RANGE.max)
    .optional()
    .meta({
      description: `With catchUp "each": most missed ticks run (default ${SCHEDULE_DEFAULTS.catchUpLimit}).`,
    }),
  overlap: z
    .enum(OVERLAP_POLICIES)
    .optional()
    .meta({
      description: `"skip": no job while the previous one is pending or running (default ${SCHEDULE_DEFAULTS.overlap}).`,
    }),
  paused: z.boolean().optional(),
});

/** A schedule to create: a name and its settings. */
export const ScheduleSpecSchema = ScheduleFieldsSchema.extend({
  name: z.string().regex(NAME, `a schedule name: ${NAME_RULE}`),
}).meta({
  id: "ScheduleInput",
  example: {
    name: "nightly-report",
    cron: "30 2 * * *",
    timeZone: "Europe/Berlin",
    task: "send-report",
    payload: { kind: "daily" },
    catchUp: "once",
    overlap: "skip",
  },
});

/** Changes to a schedule: any subset of its settings; `null` resets a job option to its default. */
export const SchedulePatchSchema = ScheduleFieldsSchema.partial().meta({
  id: "ScheduleUpdate",
  example: { cron: "0 3 * * *", paused: false },
});

export type ScheduleSpec = z.input<typeof ScheduleSpecSchema>;
export type SchedulePatch = z.input<typeof SchedulePatchSchema>;

/** A schedule definition with every default filled in and every name canonical. */
export interface ScheduleDefinition {
  name: string;
  cron: string;
  timeZone: string;
  task: string;
  payload: unknown;
  queue: string | null;
  priority: number | null;
  maxAttempts: number | null;
  timeoutMs: number | null;
  catchUp: CatchUpPolicy;
  catchUpLimit: number;
  overlap: OverlapPolicy;
  /** Hash of the fields above except the name: equal definitions hash alike. */
  hash: string;
}

/** An issue in the shape the API reports: a dotted path, a message, a code. */
export interface ScheduleIssue {
  path: string;
  message: string;
  code: string;
}

const MAX_ISSUES = 50;

/** Throws INVALID_SCHEDULE listing every issue, `details` holding them for the API. */
export function invalidDefinition(issues: ScheduleIssue[], what = "schedule"): PgwakeError {
  return new PgwakeError(
    "INVALID_SCHEDULE",
    `invalid ${what}: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
    { details: issues.slice(0, MAX_ISSUES) },
  );
}

/** Parses with a schema or throws INVALID_SCHEDULE naming every bad field. */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  what: string,
): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw invalidDefinition(
    parsed.error.issues.map((issue) => {
      const keys = (issue as { keys?: string[] }).keys;
      const path = issue.path.map(String).join(".");
      return {
        path: path || (keys ? keys.join(",") : "(root)"),
        message: issue.message,
        code: issue.code,
      };
    }),
    what,
  );
}

/** What a process knows about tasks, to check a schedule's jobs as an enqueue would. */
export interface TaskKnowledge {
  /**
   * Checks a job like an enqueue does and fills in its task's defaults (`Pgwake.prepare`): the
   * payload against the task's schema, unknown task names by the client's policy. Takes
   * precedence over `tasks`.
   */
  prepareJob?: (job: NewJob) => NewJob;
  /** Known tasks (without `prepareJob`): payload schemas and job option defaults. */
  tasks?: TaskRegistry;
  /** Refuse task names this process does not know (UNKNOWN_TASK). */
  requireKnownTask?: boolean;
  /** Which task names are known (default: those in `tasks`). */
  knowsTask?: (name: string) => boolean;
}

/**
 * Validates a schedule and fills in its defaults. With `prepareJob` or `tasks`, its payload is
 * checked as a job's would be and the task's job options stand in for those the schedule leaves
 * out (`null` keeps the engine's default). Throws INVALID_SCHEDULE (bad settings, with every issue
 * in `details`), INVALID_PAYLOAD or UNKNOWN_TASK.
 */
export function defineSchedule(spec: unknown, knowledge: TaskKnowledge = {}): ScheduleDefinition {
  const input = parseOrThrow(ScheduleSpecSchema, spec, "schedule");
  const unstorable = findUnstorable(input.payload, "payload");
  if (unstorable) throw invalidDefinition([unstorable]);
  if (knowledge.requireKnownTask) {
    const known = knowledge.knowsTask
      ? knowledge.knowsTask(input.task)
      : (knowledge.tasks?.has(input.task) ?? true);
    if (!known) throw new PgwakeError("UNKNOWN_TASK", `unknown task "${input.task}"`);
  }
  const given = {
    ...(input.queue != null ? { queue: input.queue } : {}),
    ...(input.priority != null ? { priority: input.priority } : {}),
    ...(input.maxAttempts != null ? { maxAttempts: input.maxAttempts } : {}),
    ...(input.timeoutMs != null ? { timeoutMs: input.timeoutMs } : {}),
  };
  const job: NewJob = { task: input.task, payload: input.payload ?? {}, ...given };
  let prepared: NewJob = job;
  if (knowledge.prepareJob) {
    prepared = knowledge.prepareJob(job);
  } else {
    const task = knowledge.tasks?.get(input.task);
    if (task) {
      prepared = {
        ...job,
        payload: knowledge.tasks!.parsePayload(input.task, job.payload),
        queue: job.queue ?? task.queue,
        priority: job.priority ?? task.priority,
        maxAttempts: job.maxAttempts ?? task.maxAttempts,
        timeoutMs: job.timeoutMs ?? task.timeoutMs,
      };
    }
  }
  // An explicit null means the engine's default, not the task's.
  const option = <K extends "queue" | "priority" | "maxAttempts" | "timeoutMs">(key: K) =>
    input[key] === null ? null : (prepared[key] ?? null);
  const fields = {
    cron: normalizeCronExpression(input.cron),
    timeZone: normalizeTimeZone(input.timeZone ?? SCHEDULE_DEFAULTS.timeZone),
    task: input.task,
    payload: prepared.payload ?? {},
    queue: option("queue"),
    priority: option("priority"),
    maxAttempts: option("maxAttempts"),
    timeoutMs: option("timeoutMs"),
    catchUp: input.catchUp ?? SCHEDULE_DEFAULTS.catchUp,
    catchUpLimit: input.catchUpLimit ?? SCHEDULE_DEFAULTS.catchUpLimit,
    overlap: input.overlap ?? SCHEDULE_DEFAULTS.overlap,
  };
  return { name: input.name, ...fields, hash: definitionHash(fields) };
}

/** Hash of a definition's settings: key order and spacing never change it. */
export function definitionHash(fields: Omit<ScheduleDefinition, "name" | "hash">): string {
  const ordered = [
    fields.cron,
    fields.timeZone,
    fields.task,
    canonical(fields.payload),
    fields.queue,
    fields.priority,
    fields.maxAttempts,
    fields.timeoutMs,
    fields.catchUp,
    fields.catchUpLimit,
    fields.overlap,
  ];
  return createHash("sha256").update(JSON.stringify(ordered)).digest("hex").slice(0, 32);
}

/** A JSON value with object keys sorted at every level (jsonb does not keep key order). */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, canonical((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}

function reasonOf(error: unknown): string {
  const details = (error as { details?: unknown }).details;
  if (Array.isArray(details) && typeof details[0]?.message === "string") return details[0].message;
  return error instanceof Error ? error.message : String(error);
}
