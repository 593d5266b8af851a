import { z } from "zod";
import { JOB_STATUSES } from "../jobs/types.ts";

// Names follow the database's checks, so whatever passes here is also accepted by Postgres.
const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Ten years: far enough for any schedule, small enough that `now() + delay` never overflows. */
export const MAX_DELAY_MS = 10 * 365 * 24 * 3_600_000;
const MAX_INT32 = 2_147_483_647;

export const JobStatusSchema = z.enum(JOB_STATUSES).meta({ example: "pending" });

const EXAMPLE_TIME = "2025-01-01T12:00:00.000Z";

/** Body of `POST /jobs` (and each item of a batch). */
export const SubmitJobSchema = z
  .strictObject({
    task: z.string().regex(NAME, "a task name: 1-128 of A-Z a-z 0-9 _ . : -"),
    payload: z.unknown().optional().meta({
      description: "Any JSON value; checked against the task's schema when the task is known.",
    }),
    queue: z.string().regex(NAME, "a queue name: 1-128 of A-Z a-z 0-9 _ . : -").optional(),
    priority: z.int().min(-1000).max(1000).optional().meta({ description: "Lower runs first." }),
    runAt: z.iso
      .datetime({ offset: true })
      .optional()
      .meta({ description: "When to run, ISO 8601; exclusive with delayMs." }),
    delayMs: z
      .int()
      .min(0)
      .max(MAX_DELAY_MS)
      .optional()
      .meta({ description: "Run after this delay (database clock); exclusive with runAt." }),
    maxAttempts: z.int().min(1).max(1000).optional(),
    timeoutMs: z.int().min(1).max(MAX_INT32).optional(),
    idempotencyKey: z.string().min(1).max(255).optional().meta({
      description:
        "A repeat of the key (per queue) returns the original job. May also come as the Idempotency-Key header.",
    }),
  })
  .refine((body) => body.runAt === undefined || body.delayMs === undefined, {
    message: "give runAt or delayMs, not both",
    path: ["delayMs"],
  })
  .meta({
    id: "SubmitJob",
    example: {
      task: "send-email",
      payload: { to: "ada@example.com" },
      queue: "default",
      priority: 0,
      idempotencyKey: "order-1042",
    },
  });
export type SubmitJob = z.infer<typeof SubmitJobSchema>;

export const SubmitBatchSchema = z.strictObject({ jobs: z.array(SubmitJobSchema).min(1) }).meta({
  id: "SubmitBatch",
  example: {
    jobs: [
      { task: "send-email", payload: { to: "ada@example.com" } },
      { task: "send-email", payload: { to: "alan@example.com" }, delayMs: 60000 },
    ],
  },
});

export const CancelBodySchema = z
  .strictObject({ reason: z.string().max(1000).optional() })
  .meta({ id: "CancelRequest", example: { reason: "customer withdrew the order" } });

const SerializedErrorSchema = z.object({
  name: z.string(),
  message: z.string(),
  code: z.string().optional(),
  stack: z.string().optional(),
  value: z.unknown().optional(),
});

export const JobSchema = z
  .object({
    id: z.int(),
    queue: z.string(),
    task: z.string(),
    payload: z.unknown(),
    status: JobStatusSchema,
    priority: z.int(),
    attempts: z.int(),
    maxAttempts: z.int(),
    timeoutMs: z.int().nullable(),
    runAt: z.iso.datetime(),
    createdAt: z.iso.datetime(),
    startedAt: z.iso.datetime().nullable(),
    finishedAt: z.iso.datetime().nullable(),
    updatedAt: z.iso.datetime(),
    result: z.unknown(),
    lastError: SerializedErrorSchema.nullable(),
    idempotencyKey: z.string().nullable(),
    requestId: z.string().nullable(),
    leaseOwner: z.string().nullable(),
    leaseExpiresAt: z.iso.datetime().nullable(),
  })
  .meta({ id: "Job" });

export const EXAMPLE_JOB = {
  id: 1042,
  queue: "default",
  task: "send-email",
  payload: { to: "ada@example.com" },
  status: "pending",
  priority: 0,
  attempts: 0,
  maxAttempts: 10,
  timeoutMs: null,
  runAt: EXAMPLE_TIME,
  createdAt: EXAMPLE_TIME,
  startedAt: null,
  finishedAt: null,
  updatedAt: EXAMPLE_TIME,
  result: null,
  lastError: null,
  idempotencyKey: "order-1042",
  requestId: "4f1c2a8e-9d53-4b7a-a1c2-0e8f6b9d7c31",
  leaseOwner: null,
  leaseExpiresAt: null,
} as const;

export const SubmittedJobSchema = z
  .object({ job: JobSchema, duplicate: z.boolean() })
  .meta({ id: "SubmittedJob" });

export const BatchResultSchema = z
  .object({
    items: z.array(SubmittedJobSchema),
    created: z.int(),
    duplicates: z.int(),
  })
  .meta({ id: "BatchResult" });

export const JobPageSchema = z
  .object({ jobs: z.array(JobSchema), nextCursor: z.string().nullable() })
  .meta({ id: "JobPage" });

export const JobEventSchema = z
  .object({
    id: z.int().nullable().meta({ description: "null for steps derived from the job row" }),
    jobId: z.int(),
    kind: z.string(),
    attempt: z.int().nullable(),
    workerId: z.string().nullable(),
    message: z.string().nullable(),
    data: z.unknown(),
    at: z.iso.datetime(),
  })
  .meta({ id: "JobEvent" });

export const EventPageSchema = z
  .object({ events: z.array(JobEventSchema), nextCursor: z.string().nullable() })
  .meta({ id: "EventPage" });

export const CancelResultSchema = z
  .object({ job: JobSchema, was: JobStatusSchema })
  .meta({ id: "CancelResult" });

export const QueueWorkerSchema = z.object({
  id: z.string(),
  host: z.string(),
  pid: z.int(),
  concurrency: z.int(),
  listening: z.boolean(),
  lastSeenAt: z.iso.datetime(),
});

export const QueueStatsSchema = z
  .object({
    name: z.string(),
    paused: z.boolean(),
    counts: z.record(JobStatusSchema, z.int()),
    oldestPendingAgeMs: z.number().nullable().meta({
      description:
        "Age of the oldest job ready to run (pending or retrying with runAt reached); null when none.",
    }),
    workers: z.array(QueueWorkerSchema),
  })
  .meta({ id: "QueueStats" });

export const QueueListSchema = z
  .object({ queues: z.array(QueueStatsSchema) })
  .meta({ id: "QueueList" });

export const QueueSettingsSchema = z
  .object({ name: z.string(), paused: z.boolean(), updatedAt: z.iso.datetime() })
  .meta({ id: "QueueSettings" });

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .meta({ id: "Error" });

export const HealthSchema = z.object({ status: z.literal("ok") }).meta({ id: "Health" });
export const ReadySchema = z
  .object({ status: z.literal("ready"), schema: z.object({ current: z.int(), latest: z.int() }) })
  .meta({ id: "Ready" });

// Query strings arrive as text: numbers are parsed here, with bounds.
const decimal = (max: number) =>
  z
    .string()
    .regex(/^\d{1,16}$/, "a positive integer")
    .transform(Number)
    .pipe(z.number().int().min(1).max(max));

export const ListJobsQuerySchema = z.strictObject({
  queue: z.string().regex(NAME, "a queue name").optional(),
  task: z.string().regex(NAME, "a task name").optional(),
  status: z
    .string()
    .transform((s) => s.split(","))
    .pipe(z.array(JobStatusSchema).min(1).max(JOB_STATUSES.length))
    .optional()
    .meta({ description: "One status or several, comma separated." }),
  limit: decimal(500).optional().meta({ description: "1-500, default 50" }),
  cursor: decimal(Number.MAX_SAFE_INTEGER)
    .optional()
    .meta({ description: "nextCursor of the previous page" }),
});

export const EventsQuerySchema = z.strictObject({
  limit: decimal(1000).optional().meta({ description: "1-1000, default 100" }),
  cursor: decimal(Number.MAX_SAFE_INTEGER)
    .optional()
    .meta({ description: "nextCursor of the previous page" }),
});

export const QUEUE_NAME = NAME;
