import { z } from "zod";
import { JOB_STATUSES } from "../jobs/types.ts";
import { API_ERROR_CODES, type ApiErrorCode } from "./errors.ts";

// The zod schemas the routes validate with and answer with. The OpenAPI document is generated
// from them (a `meta({ id })` makes a schema a named component), so what is documented is what
// is checked. Names follow the database's checks: whatever passes here Postgres also accepts.

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Ten years: far enough for any schedule, small enough that `now() + delay` never overflows. */
export const MAX_DELAY_MS = 10 * 365 * 24 * 3_600_000;
const MAX_INT32 = 2_147_483_647;
/** Job ids and cursors: positive integers JavaScript holds exactly. */
const MAX_ID = Number.MAX_SAFE_INTEGER;

/** Every time the API answers with: what `Date.prototype.toISOString()` writes (UTC, ms). */
export const TIMESTAMP_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export const TimestampSchema = z.string().regex(TIMESTAMP_PATTERN).meta({
  id: "Timestamp",
  format: "date-time",
  description: "ISO 8601 in UTC with milliseconds, as `Date.prototype.toISOString()` writes it.",
  example: "2025-01-01T12:00:00.000Z",
});

/**
 * A named schema or null. (`.nullable()` on a named schema is written by the generator as
 * `allOf: [$ref, {type: [..., "null"]}]`, which refuses null; a union is written `anyOf`.)
 */
function orNull<S extends z.ZodType>(schema: S) {
  return z.union([schema, z.null()]);
}

export const JobStatusSchema = z.enum(JOB_STATUSES).meta({
  id: "JobStatus",
  description:
    "pending → running → completed; a failed attempt goes to retrying, the last one to failed; cancelled ends a job early.",
  example: "pending",
});

export const ErrorCodeSchema = z.enum(API_ERROR_CODES).meta({
  id: "ErrorCode",
  description: "What went wrong, for programs: stable across versions.",
  example: "VALIDATION_FAILED",
});

/** The one error body: every failure the API answers has this shape. */
export const ErrorResponseSchema = z
  .object({
    error: z.object({
      code: ErrorCodeSchema,
      message: z.string().meta({ description: "What went wrong, for people." }),
      details: z.unknown().optional().meta({
        description:
          "More about the failure: the invalid fields (`[{ path, message, code }]`), the allowed methods, the schema versions…",
      }),
    }),
  })
  .meta({ id: "ErrorResponse", description: "Every error the API answers." });

/**
 * The error body narrowed to the codes one response can carry, so the document (and a client
 * generated from it) says exactly which codes a status means for an operation.
 */
export function errorSchemaOf(codes: readonly [ApiErrorCode, ...ApiErrorCode[]]) {
  return z.object({
    error: z.object({
      code: z.enum(codes),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  });
}

/** Body of `POST /jobs` (and each item of a batch). */
export const SubmitJobSchema = z
  .strictObject({
    task: z.string().regex(NAME, "a task name: 1-128 of A-Z a-z 0-9 _ . : -").meta({
      description: "The task to run; a task this server does not know is refused (422).",
    }),
    payload: z.unknown().optional().meta({
      description:
        "Any JSON value (default `{}`); checked against the task's schema when the server knows the task.",
    }),
    queue: z
      .string()
      .regex(NAME, "a queue name: 1-128 of A-Z a-z 0-9 _ . : -")
      .optional()
      .meta({ description: "Default: the task's queue, else `default`." }),
    priority: z
      .int()
      .min(-1000)
      .max(1000)
      .optional()
      .meta({ description: "Lower runs first (default 0, or the task's)." }),
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
    maxAttempts: z
      .int()
      .min(1)
      .max(1000)
      .optional()
      .meta({ description: "Attempts before the job fails for good (default 10, or the task's)." }),
    timeoutMs: z
      .int()
      .min(1)
      .max(MAX_INT32)
      .optional()
      .meta({ description: "Time one attempt may take (default: the task's, else the worker's)." }),
    idempotencyKey: z.string().min(1).max(255).optional().meta({
      description:
        "A repeat of the key in the same queue returns the original job (200, `duplicate: true`). May also come as the Idempotency-Key header.",
    }),
    keyMode: z.enum(["retain", "active", "debounce"]).optional().meta({
      description:
        "How long idempotencyKey holds: `retain` (default) for the retention period; `active` while the job is not finished (a new job once it has); `debounce` while it has not started (a repeat replaces its payload and run time, and returns it as the duplicate).",
    }),
    concurrencyKey: z.string().min(1).max(255).optional().meta({
      description:
        "Counts the job against its queue's per-key limits (flow control), e.g. a tenant id. Default: what the task derives from the payload, else none.",
    }),
  })
  .refine((body) => body.runAt === undefined || body.delayMs === undefined, {
    message: "give runAt or delayMs, not both",
    path: ["delayMs"],
  })
  .refine(
    (body) =>
      body.keyMode === undefined || body.keyMode === "retain" || body.idempotencyKey !== undefined,
    { message: "keyMode active or debounce needs an idempotencyKey", path: ["keyMode"] },
  )
  .meta({ id: "SubmitJob", description: "A job to add." });
export type SubmitJob = z.infer<typeof SubmitJobSchema>;

export const SubmitBatchSchema = z
  .strictObject({ jobs: z.array(SubmitJobSchema).min(1) })
  .meta({ id: "SubmitBatch", description: "Jobs to add together: all or none." });

export const CancelRequestSchema = z
  .strictObject({
    reason: z
      .string()
      .max(1000)
      .optional()
      .meta({ description: "Kept in the job's `cancelled` event." }),
  })
  .meta({ id: "CancelRequest", description: "Optional body of a cancellation." });

export const RetryRequestSchema = z
  .strictObject({})
  .meta({ id: "RetryRequest", description: "A retry takes no options: send no body, or `{}`." });

export const JobErrorSchema = z
  .object({
    name: z.string(),
    message: z.string(),
    code: z.string().optional(),
    stack: z.string().optional(),
    value: z
      .unknown()
      .optional()
      .meta({ description: "What the handler threw, when it was not an Error." }),
  })
  .meta({ id: "JobError", description: "Why the last attempt failed." });

export const JobSchema = z
  .object({
    id: z.int().min(1),
    queue: z.string(),
    task: z.string(),
    payload: z.unknown().nonoptional(),
    status: JobStatusSchema,
    priority: z.int(),
    attempts: z.int().min(0).meta({ description: "Attempts started so far." }),
    maxAttempts: z.int().min(1),
    timeoutMs: z.int().nullable(),
    runAt: TimestampSchema,
    createdAt: TimestampSchema,
    startedAt: orNull(TimestampSchema),
    finishedAt: orNull(TimestampSchema),
    updatedAt: TimestampSchema,
    result: z
      .unknown()
      .nonoptional()
      .meta({ description: "What the handler returned; null until the job completes." }),
    lastError: orNull(JobErrorSchema),
    idempotencyKey: z.string().nullable(),
    concurrencyKey: z
      .string()
      .nullable()
      .meta({ description: "The key the job counts against in its queue's per-key limits." }),
    requestId: z
      .string()
      .nullable()
      .meta({ description: "The x-request-id of the request that created the job." }),
    leaseOwner: z
      .string()
      .nullable()
      .meta({ description: "The worker that holds the job (running) or last held it." }),
    leaseExpiresAt: orNull(TimestampSchema),
  })
  .meta({ id: "Job", description: "A job and where it is in its life." });

export const SubmittedJobSchema = z
  .object({
    job: JobSchema,
    duplicate: z.boolean().meta({
      description: "True when the idempotency key was already used: `job` is the original.",
    }),
  })
  .meta({ id: "SubmittedJob" });

export const BatchResultSchema = z
  .object({
    items: z.array(SubmittedJobSchema).meta({ description: "In the order of the request." }),
    created: z.int().min(0),
    duplicates: z.int().min(0),
  })
  .meta({ id: "BatchResult" });

const CURSOR_DESCRIPTION = "Pass as `cursor` for the next page; null on the last page.";

export const JobPageSchema = z
  .object({
    jobs: z.array(JobSchema),
    nextCursor: z.int().min(1).nullable().meta({ description: CURSOR_DESCRIPTION }),
  })
  .meta({ id: "JobPage" });

export const JobEventSchema = z
  .object({
    id: z.int().nullable().meta({ description: "null for steps derived from the job row" }),
    jobId: z.int(),
    kind: z.string().meta({
      description:
        "enqueued, claimed, completed, attempt_failed, retry_scheduled, lease_expired, returned, outcome_ignored, cancelled, retried, failed, log",
    }),
    attempt: z.int().nullable(),
    workerId: z.string().nullable(),
    message: z.string().nullable(),
    data: z.unknown().nonoptional(),
    at: TimestampSchema,
  })
  .meta({ id: "JobEvent", description: "One step of a job's life, or a line its handler logged." });

export const EventPageSchema = z
  .object({
    events: z.array(JobEventSchema),
    nextCursor: z.int().min(1).nullable().meta({ description: CURSOR_DESCRIPTION }),
  })
  .meta({ id: "EventPage" });

export const CancelResultSchema = z
  .object({
    job: JobSchema,
    was: JobStatusSchema,
  })
  .meta({ id: "CancelResult", description: "The job, cancelled; `was` is the status it had." });

export const RetryResultSchema = z
  .object({ job: JobSchema })
  .meta({ id: "RetryResult", description: "The job, pending again with its attempts at 0." });

export const QueueWorkerSchema = z
  .object({
    id: z.string(),
    host: z.string(),
    pid: z.int(),
    concurrency: z.int(),
    listening: z.boolean().meta({ description: "Woken by NOTIFY (false: polling only)." }),
    lastSeenAt: TimestampSchema,
  })
  .meta({ id: "QueueWorker", description: "A live worker process that serves the queue." });

export const JobCountsSchema = z
  .object(Object.fromEntries(JOB_STATUSES.map((status) => [status, z.int().min(0)])))
  .meta({ id: "JobCounts", description: "Jobs in the queue by status." }) as z.ZodObject<
  Record<(typeof JOB_STATUSES)[number], z.ZodInt>
>;

const limitCount = z.int().min(1).max(MAX_INT32).nullable();
const periodMs = z.int().min(1).max(MAX_INT32);

/** A queue's limits (flow control); each may be null: no such limit. */
export const QueueLimitsSchema = z
  .strictObject({
    concurrency: limitCount
      .optional()
      .meta({ description: "Jobs of the queue running at once, across every worker." }),
    keyConcurrency: limitCount.optional().meta({
      description:
        "Jobs of one concurrency key running at once (1: a strict serial lane per key, in priority then submission order).",
    }),
    rateLimit: limitCount
      .optional()
      .meta({ description: "Job starts per ratePeriodMs for the queue (a token bucket)." }),
    ratePeriodMs: periodMs.optional().meta({ description: "Default 1000." }),
    rateBurst: limitCount.optional().meta({
      description:
        "Starts allowed at once after idling (the bucket's size). Default 1: starts spread evenly over the period.",
    }),
    keyRateLimit: limitCount
      .optional()
      .meta({ description: "Job starts per keyRatePeriodMs for each concurrency key." }),
    keyRatePeriodMs: periodMs.optional().meta({ description: "Default 1000." }),
    keyRateBurst: limitCount.optional().meta({ description: "As rateBurst, per key." }),
    fair: z.boolean().optional().meta({
      description:
        "Keys take the queue's starts in turn (round robin): a key with a large backlog cannot hold back a key with a few jobs.",
    }),
  })
  .meta({
    id: "QueueLimits",
    description:
      "Limits of a queue across every worker. Setting them replaces all of them: what is left out is removed.",
  });

export const QueueKeySchema = z
  .object({
    key: z.string(),
    running: z.int().min(0),
    tokens: z.number().nullable().meta({ description: "Tokens in the key's bucket now." }),
  })
  .meta({ id: "QueueKey" });

export const QueueFlowSchema = z
  .object({
    concurrency: z.int().nullable(),
    keyConcurrency: z.int().nullable(),
    rateLimit: z.int().nullable(),
    ratePeriodMs: z.int(),
    rateBurst: z.int().nullable(),
    keyRateLimit: z.int().nullable(),
    keyRatePeriodMs: z.int(),
    keyRateBurst: z.int().nullable(),
    fair: z.boolean(),
    source: z.enum(["operator", "tasks"]).nullable().meta({
      description:
        "Who set the limits: an operator (kept until changed) or the task definitions' defaults.",
    }),
    running: z.int().min(0).meta({ description: "Jobs running that hold one of its slots." }),
    tokens: z
      .number()
      .nullable()
      .meta({ description: "Tokens in the queue's bucket now (null: no rate limit)." }),
    throttled: z.int().min(0).meta({
      description: "Pending jobs held back by a limit now (counted up to 10,000).",
    }),
    keys: z
      .int()
      .min(0)
      .nullable()
      .meta({ description: "Concurrency keys known (up to 10,000); null when not keyed." }),
    busiestKeys: z
      .array(QueueKeySchema)
      .nullable()
      .meta({ description: "The keys running the most jobs (up to 10)." }),
  })
  .meta({ id: "QueueFlow", description: "A limited queue's limits and their state." });

export const QueueStatsSchema = z
  .object({
    name: z.string(),
    paused: z.boolean(),
    counts: JobCountsSchema,
    oldestPendingAgeMs: z.number().min(0).nullable().meta({
      description:
        "Age of the oldest job ready to run (pending or retrying with runAt reached); null when none.",
    }),
    workers: z.array(QueueWorkerSchema),
    flow: QueueFlowSchema.nullable().meta({
      description: "The queue's limits and their state; null when it has none.",
    }),
  })
  .meta({ id: "QueueStats" });

export const QueueLimitsStateSchema = z
  .object({
    name: z.string(),
    limited: z.boolean(),
    flow: QueueFlowSchema.omit({ keys: true, busiestKeys: true }),
    updatedAt: TimestampSchema,
  })
  .meta({ id: "QueueLimitsState", description: "A queue's limits, as now stored." });

export const QueueKeyListSchema = z
  .object({
    keys: z.array(
      QueueKeySchema.extend({
        pending: z
          .int()
          .min(0)
          .meta({ description: "Jobs of the key ready to run (up to 10,000)." }),
      }),
    ),
  })
  .meta({ id: "QueueKeyList" });

export const QueueKeysQuerySchema = z.strictObject({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .optional()
    .meta({ description: "Most keys (default 100).", param: { name: "limit", in: "query" } }),
});

const WaitReasonSchema = z
  .object({
    reason: z.enum([
      "ready",
      "queue_paused",
      "run_at",
      "queue_concurrency",
      "queue_rate",
      "key_concurrency",
      "key_rate",
      "key_order",
    ]),
    key: z.string().optional().meta({ description: "The concurrency key at its limit." }),
    limit: z.int().optional(),
    running: z.int().optional(),
    periodMs: z.int().optional(),
    nextTokenMs: z
      .int()
      .optional()
      .meta({ description: "When the next start is allowed, from now (rate limits)." }),
    runAt: TimestampSchema.optional(),
  })
  .meta({
    id: "WaitReason",
    description:
      "Why the job has not started: `ready` (waiting for a free worker), `queue_paused`, `run_at` (its time is ahead), `queue_concurrency` / `queue_rate` (a limit of its queue at its maximum), `key_concurrency` / `key_rate` (a limit of its concurrency key), `key_order` (an earlier job of its key goes first).",
  });

export const JobDetailSchema = JobSchema.extend({
  waitingFor: WaitReasonSchema.nullable().meta({
    description: "Why the job has not started; null when it is running or finished.",
  }),
}).meta({ id: "JobDetail", description: "A job, and why it waits when it does." });

export const QueueListSchema = z
  .object({ queues: z.array(QueueStatsSchema) })
  .meta({ id: "QueueList" });

export const QueueSettingsSchema = z
  .object({ name: z.string(), paused: z.boolean(), updatedAt: TimestampSchema })
  .meta({ id: "QueueSettings" });

export const HealthSchema = z.object({ status: z.literal("ok") }).meta({ id: "Health" });

export const ReadySchema = z
  .object({
    status: z.literal("ready"),
    schema: z.object({ current: z.int(), latest: z.int() }),
  })
  .meta({ id: "Ready" });

export const OpenApiDocumentSchema = z
  .looseObject({
    openapi: z.string().regex(/^3\.1\.\d+$/),
    info: z.looseObject({ title: z.string(), version: z.string() }),
    paths: z.record(z.string(), z.unknown()),
  })
  .meta({ id: "OpenApiDocument", description: "An OpenAPI 3.1 document: this one." });

// Path and query values arrive as text; a plain decimal is read as a number, anything else is
// left as text for the number schema to refuse (" 1", "1e3" and "0x10" are not ids).
const decimal = (value: unknown) =>
  typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : value;
const positiveInt = (max: number) => z.preprocess(decimal, z.int().min(1).max(max));

/** Path of the job routes. A bad id is answered 400 INVALID_ID. */
export const JobIdParamsSchema = z.object({
  id: positiveInt(MAX_ID).meta({
    description: "The job's id.",
    param: { name: "id", in: "path", example: 1 },
  }),
});

/** Path of the queue routes. */
export const QueueNameParamsSchema = z.object({
  name: z
    .string()
    .regex(NAME, "a queue name: 1-128 of A-Z a-z 0-9 _ . : -")
    .meta({
      description: "A queue name: 1-128 of A-Z a-z 0-9 _ . : -",
      param: { name: "name", in: "path", example: "default" },
    }),
});

export const PauseQueueQuerySchema = z.strictObject({
  create: z
    .enum(["true", "false"])
    .optional()
    .meta({
      description:
        "`true` pauses a queue nobody knows yet (no jobs, no worker, no task defaults to it), to hold its jobs before the first one arrives. Without it such a name is refused (404): most often it is a typo.",
      param: { name: "create", in: "query" },
    }),
});

export const SubmitHeadersSchema = z.object({
  "idempotency-key": z
    .string()
    .min(1)
    .max(255)
    .optional()
    .meta({
      description: "Same as the body's idempotencyKey (they must agree when both are given).",
      param: { name: "idempotency-key", in: "header" },
    }),
});

export const ListJobsQuerySchema = z.strictObject({
  queue: z
    .string()
    .regex(NAME, "a queue name")
    .optional()
    .meta({ description: "Only this queue.", param: { name: "queue", in: "query" } }),
  task: z
    .string()
    .regex(NAME, "a task name")
    .optional()
    .meta({ description: "Only this task.", param: { name: "task", in: "query" } }),
  status: z
    .preprocess(
      (value) => (typeof value === "string" ? value.split(",") : value),
      z.array(JobStatusSchema).min(1).max(JOB_STATUSES.length),
    )
    .optional()
    .meta({
      description: "Only these statuses, comma separated.",
      param: { name: "status", in: "query", style: "form", explode: false },
    }),
  limit: positiveInt(500)
    .optional()
    .meta({
      description: "Jobs per page, 1-500 (default 50).",
      param: { name: "limit", in: "query", example: 20 },
    }),
  cursor: positiveInt(MAX_ID)
    .optional()
    .meta({
      description: "`nextCursor` of the previous page.",
      param: { name: "cursor", in: "query" },
    }),
  createdAfter: z.iso
    .datetime({ offset: true })
    .optional()
    .meta({
      description: "Only jobs submitted at or after this time (ISO 8601).",
      param: { name: "createdAfter", in: "query" },
    }),
  createdBefore: z.iso
    .datetime({ offset: true })
    .optional()
    .meta({
      description: "Only jobs submitted before this time (ISO 8601).",
      param: { name: "createdBefore", in: "query" },
    }),
});

export const EventsQuerySchema = z.strictObject({
  limit: positiveInt(1000)
    .optional()
    .meta({
      description: "Events per page, 1-1000 (default 100).",
      param: { name: "limit", in: "query", example: 100 },
    }),
  cursor: positiveInt(MAX_ID)
    .optional()
    .meta({
      description: "`nextCursor` of the previous page.",
      param: { name: "cursor", in: "query" },
    }),
});
