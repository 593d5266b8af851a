import type { z } from "zod";
import { JOB_STATUSES, type JobStatus } from "../jobs/types.ts";
import type { TaskRegistry } from "../tasks.ts";
import type {
  BatchResultSchema,
  CancelResultSchema,
  EventPageSchema,
  JobDetailSchema,
  JobPageSchema,
  JobSchema,
  QueueKeyListSchema,
  QueueLimitsSchema,
  QueueLimitsStateSchema,
  QueueListSchema,
  QueueSettingsSchema,
  RetryResultSchema,
  SubmitBatchSchema,
  SubmitJobSchema,
  SubmittedJobSchema,
} from "./schemas.ts";

// The document's examples. Request examples are sent to a real server by the OpenAPI test, in
// document order, on an empty schema: so they name a task the server knows and job 1, which
// the first submission creates. Each is typed by its schema, and the test validates them too.

/** The task the examples submit, with a payload it accepts. */
export interface ExampleTask {
  name: string;
  payload: unknown;
}

/** What the examples need to know of the server's tasks (a `Pgwake` has it). */
export interface KnownTasks {
  tasks: TaskRegistry;
  knownTaskNames(): string[];
}

/**
 * `demo.echo` when the server knows it (or accepts any task), else the first task it runs that
 * has an example payload, else the first name it knows: so "Try it out" works on this server.
 */
export function exampleTask(known: KnownTasks): ExampleTask {
  const names = known.knownTaskNames();
  const echo = known.tasks.get("demo.echo");
  if (echo || names.length === 0 || names.includes("demo.echo")) {
    return { name: "demo.echo", payload: echo?.example ?? { hello: "world" } };
  }
  const withExample = [...known.tasks].find((task) => task.example !== undefined);
  if (withExample) return { name: withExample.name, payload: withExample.example };
  return { name: names[0]!, payload: {} };
}

const T0 = "2025-01-01T12:00:00.000Z";
const WORKER = "host-1:4242:ab12";

type In<S extends z.ZodType> = z.input<S>;
type Example<S extends z.ZodType> = { summary: string; value: In<S> };

/**
 * Every example of the document: for the task the examples use, plus one submission of each
 * known task that has an example payload.
 */
export function apiExamples(task: ExampleTask, tasks: TaskRegistry) {
  const job: In<typeof JobSchema> = {
    id: 1,
    queue: "default",
    task: task.name,
    payload: task.payload,
    status: "pending",
    priority: 0,
    attempts: 0,
    maxAttempts: 10,
    timeoutMs: null,
    runAt: T0,
    createdAt: T0,
    startedAt: null,
    finishedAt: null,
    updatedAt: T0,
    result: null,
    lastError: null,
    idempotencyKey: null,
    concurrencyKey: null,
    requestId: "4f1c2a8e-9d53-4b7a-a1c2-0e8f6b9d7c31",
    leaseOwner: null,
    leaseExpiresAt: null,
  };
  const completed: In<typeof JobSchema> = {
    ...job,
    status: "completed",
    attempts: 1,
    startedAt: "2025-01-01T12:00:00.004Z",
    finishedAt: "2025-01-01T12:00:00.121Z",
    updatedAt: "2025-01-01T12:00:00.121Z",
    result: task.payload,
    leaseOwner: WORKER,
  };

  const submit: Record<string, Example<typeof SubmitJobSchema>> = {
    job: { summary: `A ${task.name} job`, value: { task: task.name, payload: task.payload } },
    delayed: {
      summary: "In a minute, before other jobs",
      value: { task: task.name, payload: task.payload, delayMs: 60_000, priority: -10 },
    },
    idempotent: {
      summary: "Once only: a repeat of the key answers the first job",
      value: { task: task.name, payload: task.payload, idempotencyKey: "order-1042" },
    },
    keyed: {
      summary: "Counted against tenant-42's limits in its queue",
      value: { task: task.name, payload: task.payload, concurrencyKey: "tenant-42" },
    },
    debounced: {
      summary: "Debounced: a repeat before it starts replaces its payload and run time",
      value: {
        task: task.name,
        payload: task.payload,
        idempotencyKey: "reindex-user-7",
        keyMode: "debounce",
        delayMs: 5_000,
      },
    },
  };
  for (const known of tasks) {
    if (known.example === undefined || known.name === task.name) continue;
    submit[`task:${known.name}`] = {
      summary: `A ${known.name} job`,
      value: { task: known.name, payload: known.example },
    };
  }
  const batch: In<typeof SubmitBatchSchema> = {
    jobs: [
      { task: task.name, payload: task.payload },
      { task: task.name, payload: task.payload, idempotencyKey: "order-1043" },
    ],
  };
  const submitted: In<typeof SubmittedJobSchema> = { job, duplicate: false };
  const duplicate: In<typeof SubmittedJobSchema> = {
    job: { ...job, idempotencyKey: "order-1042" },
    duplicate: true,
  };
  const batchCreated: In<typeof BatchResultSchema> = {
    items: [
      { job: { ...job, id: 2 }, duplicate: false },
      { job: { ...job, id: 3, idempotencyKey: "order-1043" }, duplicate: false },
    ],
    created: 2,
    duplicates: 0,
  };
  const batchDuplicates: In<typeof BatchResultSchema> = {
    items: [{ job: { ...job, id: 3, idempotencyKey: "order-1043" }, duplicate: true }],
    created: 0,
    duplicates: 1,
  };
  const jobPage: In<typeof JobPageSchema> = { jobs: [completed], nextCursor: null };
  const eventPage: In<typeof EventPageSchema> = {
    events: [
      event(null, "enqueued", null, null, T0),
      event(null, "claimed", 1, WORKER, "2025-01-01T12:00:00.004Z"),
      { ...event(7, "log", 1, WORKER, "2025-01-01T12:00:00.050Z"), message: "halfway" },
      event(null, "completed", 1, WORKER, "2025-01-01T12:00:00.121Z"),
    ],
    nextCursor: null,
  };
  const cancelled: In<typeof CancelResultSchema> = {
    job: { ...job, status: "cancelled", finishedAt: "2025-01-01T12:00:01.000Z" },
    was: "pending",
  };
  const retried: In<typeof RetryResultSchema> = { job };
  const queues: In<typeof QueueListSchema> = {
    queues: [
      {
        name: "default",
        paused: false,
        counts: { ...noJobs(), pending: 12, running: 4, retrying: 1, completed: 5120, failed: 3 },
        oldestPendingAgeMs: 85,
        workers: [
          {
            id: WORKER,
            host: "host-1",
            pid: 4242,
            concurrency: 16,
            listening: true,
            lastSeenAt: T0,
          },
        ],
        flow: null,
      },
    ],
  };
  const waiting: In<typeof JobDetailSchema> = {
    ...job,
    concurrencyKey: "tenant-42",
    waitingFor: { reason: "key_concurrency", key: "tenant-42", limit: 2, running: 2 },
  };
  const limits: Record<string, Example<typeof QueueLimitsSchema>> = {
    perTenant: {
      summary: "Two jobs per tenant at once, 50 starts a second for the queue, tenants in turn",
      value: { keyConcurrency: 2, rateLimit: 50, fair: true },
    },
    serial: { summary: "One job at a time in the whole fleet", value: { concurrency: 1 } },
  };
  const flow = {
    concurrency: null,
    keyConcurrency: 2,
    rateLimit: 50,
    ratePeriodMs: 1000,
    rateBurst: null,
    keyRateLimit: null,
    keyRatePeriodMs: 1000,
    keyRateBurst: null,
    fair: true,
    source: "operator" as const,
    running: 7,
    tokens: 0.4,
    throttled: 120,
  };
  const limitsState: In<typeof QueueLimitsStateSchema> = {
    name: "default",
    limited: true,
    flow,
    updatedAt: T0,
  };
  const keys: In<typeof QueueKeyListSchema> = {
    keys: [
      { key: "tenant-42", running: 2, tokens: null, pending: 118 },
      { key: "tenant-7", running: 1, tokens: null, pending: 2 },
    ],
  };
  const queueSettings = (paused: boolean): In<typeof QueueSettingsSchema> => ({
    name: "default",
    paused,
    updatedAt: T0,
  });
  return {
    job,
    completed,
    submit,
    batch,
    submitted,
    duplicate,
    batchCreated,
    batchDuplicates,
    jobPage,
    eventPage,
    cancelled,
    retried,
    queues,
    queueSettings,
    waiting,
    limits,
    limitsState,
    keys,
  };

  function event(
    id: number | null,
    kind: string,
    attempt: number | null,
    workerId: string | null,
    at: string,
  ) {
    return { id, jobId: 1, kind, attempt, workerId, message: kind, data: null, at };
  }
}

function noJobs(): Record<JobStatus, number> {
  return Object.fromEntries(JOB_STATUSES.map((status) => [status, 0])) as Record<JobStatus, number>;
}

/** The examples of one server. */
export type ApiExamples = ReturnType<typeof apiExamples>;
