import { z } from "zod";
import type { TaskRegistry } from "../tasks.ts";
import { EventsQuerySchema, EXAMPLE_JOB, ListJobsQuerySchema } from "./schemas.ts";

/** Component schemas, by the `id` given in schemas.ts. */
const COMPONENTS = [
  "SubmitJob",
  "SubmitBatch",
  "CancelRequest",
  "Job",
  "SubmittedJob",
  "BatchResult",
  "JobPage",
  "JobEvent",
  "EventPage",
  "CancelResult",
  "QueueStats",
  "QueueList",
  "QueueSettings",
  "Error",
  "Health",
  "Ready",
] as const;
type Component = (typeof COMPONENTS)[number];

const ref = (name: Component) => ({ $ref: `#/components/schemas/${name}` });

type Example = unknown;
interface ResponseSpec {
  description: string;
  schema?: Component;
  example: Example;
  contentType?: string;
  headers?: Record<string, { description: string; schema: { type: string } }>;
}
interface OperationSpec {
  method: "get" | "post";
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: "jobs" | "queues" | "system" | "docs";
  /** Without the bearer requirement (health; metrics when public; docs assets). */
  public?: boolean;
  parameters?: unknown[];
  body?: {
    schema: Component;
    example: Example;
    required: boolean;
    examples?: Record<string, { summary: string; value: unknown }>;
  };
  responses: Record<string, ResponseSpec>;
}

function errorExample(code: string, message: string, details?: unknown): Example {
  return { error: { code, message, ...(details !== undefined ? { details } : {}) } };
}

const jobId = {
  name: "id",
  in: "path",
  required: true,
  description: "The job's id (a positive integer).",
  schema: { type: "string", pattern: "^\\d{1,16}$" },
  example: "1042",
};
const queueName = {
  name: "name",
  in: "path",
  required: true,
  description: "A queue name: 1-128 of A-Z a-z 0-9 _ . : -",
  schema: { type: "string", pattern: "^[A-Za-z0-9_.:-]{1,128}$" },
  example: "default",
};
const idempotencyHeader = {
  name: "Idempotency-Key",
  in: "header",
  required: false,
  description: "Same as the body's idempotencyKey (they must agree when both are given).",
  schema: { type: "string", minLength: 1, maxLength: 255 },
  example: "order-1042",
};

function queryParameters(schema: z.ZodType, examples: Record<string, string>): unknown[] {
  const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as {
    properties: Record<string, { description?: string }>;
  };
  return Object.entries(json.properties).map(([name, property]) => ({
    name,
    in: "query",
    required: false,
    ...(property.description ? { description: property.description } : {}),
    schema: property,
    example: examples[name],
  }));
}

const COMMON_ERRORS: Record<string, ResponseSpec> = {
  "401": {
    description: "Missing or malformed `Authorization: Bearer <key>`",
    schema: "Error",
    example: errorExample("UNAUTHORIZED", "missing Authorization: Bearer <key>"),
  },
  "403": {
    description: "Unknown API key",
    schema: "Error",
    example: errorExample("FORBIDDEN", "the API key is not valid"),
  },
  "503": {
    description: "The database is unavailable; retry after the Retry-After header's seconds",
    schema: "Error",
    example: errorExample("DATABASE_UNAVAILABLE", "the database is unavailable, try again shortly"),
    headers: { "Retry-After": { description: "Seconds to wait", schema: { type: "integer" } } },
  },
};
const BODY_ERRORS: Record<string, ResponseSpec> = {
  "400": {
    description:
      "Malformed JSON (INVALID_JSON) or a field out of bounds (VALIDATION_FAILED, one issue per field)",
    schema: "Error",
    example: errorExample("VALIDATION_FAILED", "invalid job: priority", [
      { path: "priority", message: "Too big: expected number to be <=1000", code: "too_big" },
    ]),
  },
  "413": {
    description: "Body over the size limit",
    schema: "Error",
    example: errorExample(
      "PAYLOAD_TOO_LARGE",
      "the request body is over the limit of 1048576 bytes",
      { limitBytes: 1048576 },
    ),
  },
  "415": {
    description: "Body not sent as application/json",
    schema: "Error",
    example: errorExample(
      "UNSUPPORTED_MEDIA_TYPE",
      "send the body as Content-Type: application/json",
      { contentType: "text/plain" },
    ),
  },
};
const ID_ERRORS: Record<string, ResponseSpec> = {
  "400": {
    description: "The id is not a positive integer",
    schema: "Error",
    example: errorExample("INVALID_ID", "a job id is a positive integer", { id: "abc" }),
  },
  "404": {
    description: "No such job",
    schema: "Error",
    example: errorExample("JOB_NOT_FOUND", "no job 1042"),
  },
};

const EXAMPLE_EVENT_PAGE = {
  events: [
    {
      id: null,
      jobId: 1042,
      kind: "enqueued",
      attempt: null,
      workerId: null,
      message: "enqueued",
      data: null,
      at: "2025-01-01T12:00:00.000Z",
    },
    {
      id: null,
      jobId: 1042,
      kind: "claimed",
      attempt: 1,
      workerId: "host-1:4242:ab12",
      message: "claimed",
      data: null,
      at: "2025-01-01T12:00:00.004Z",
    },
    {
      id: 77,
      jobId: 1042,
      kind: "log",
      attempt: 1,
      workerId: "host-1:4242:ab12",
      message: "sent",
      data: { messageId: "m-1" },
      at: "2025-01-01T12:00:00.120Z",
    },
    {
      id: null,
      jobId: 1042,
      kind: "completed",
      attempt: 1,
      workerId: "host-1:4242:ab12",
      message: "completed",
      data: null,
      at: "2025-01-01T12:00:00.121Z",
    },
  ],
  nextCursor: null,
};
const EXAMPLE_QUEUE = {
  name: "default",
  paused: false,
  counts: { pending: 12, running: 4, retrying: 1, completed: 5120, failed: 3, cancelled: 0 },
  oldestPendingAgeMs: 85,
  workers: [
    {
      id: "host-1:4242:ab12",
      host: "host-1",
      pid: 4242,
      concurrency: 16,
      listening: true,
      lastSeenAt: "2025-01-01T12:00:00.000Z",
    },
  ],
};
const runningJob = {
  ...EXAMPLE_JOB,
  status: "running",
  attempts: 1,
  startedAt: "2025-01-01T12:00:00.004Z",
  leaseOwner: "host-1:4242:ab12",
  leaseExpiresAt: "2025-01-01T12:00:30.004Z",
};

/** Every operation of the API, in the order the docs show them. */
function operations(options: {
  metricsPublic: boolean;
  batchLimit: number;
  tasks: TaskRegistry;
}): OperationSpec[] {
  const taskExamples: Record<string, { summary: string; value: unknown }> = {
    basic: {
      summary: "A job",
      value: {
        task: "send-email",
        payload: { to: "ada@example.com" },
        idempotencyKey: "order-1042",
      },
    },
    delayed: {
      summary: "Run in a minute, high priority",
      value: {
        task: "send-email",
        payload: { to: "ada@example.com" },
        delayMs: 60000,
        priority: -10,
      },
    },
  };
  for (const task of options.tasks) {
    taskExamples[`task:${task.name}`] = {
      summary: `Task "${task.name}"`,
      value: { task: task.name, payload: task.example ?? {} },
    };
  }
  return [
    {
      method: "post",
      path: "/jobs",
      operationId: "submitJob",
      summary: "Submit a job",
      description:
        "Adds one job and answers once its row is committed. A repeat of an idempotency key (per queue) answers 200 with the original job and `duplicate: true`. A known task's payload is checked against its schema (422 with the schema's issues).",
      tag: "jobs",
      parameters: [idempotencyHeader],
      body: {
        schema: "SubmitJob",
        required: true,
        example: taskExamples.basic!.value,
        examples: taskExamples,
      },
      responses: {
        "201": {
          description: "Created",
          schema: "SubmittedJob",
          example: { job: EXAMPLE_JOB, duplicate: false },
          headers: { Location: { description: "The job's URL", schema: { type: "string" } } },
        },
        "200": {
          description: "Duplicate of an idempotency key: the original job",
          schema: "SubmittedJob",
          example: { job: EXAMPLE_JOB, duplicate: true },
        },
        ...BODY_ERRORS,
        "422": {
          description:
            "The payload does not match the task's schema (INVALID_PAYLOAD), or the task is unknown (UNKNOWN_TASK)",
          schema: "Error",
          example: errorExample("INVALID_PAYLOAD", 'invalid payload for task "send-email"', [
            { path: "to", message: "Invalid email address", code: "invalid_format" },
          ]),
        },
        ...COMMON_ERRORS,
      },
    },
    {
      method: "post",
      path: "/jobs/batch",
      operationId: "submitJobs",
      summary: "Submit many jobs atomically",
      description: `Adds up to ${options.batchLimit} jobs in one statement: all or none. Idempotency is per job (its idempotencyKey). Items answer in input order.`,
      tag: "jobs",
      body: {
        schema: "SubmitBatch",
        required: true,
        example: {
          jobs: [
            { task: "send-email", payload: { to: "ada@example.com" } },
            {
              task: "send-email",
              payload: { to: "alan@example.com" },
              idempotencyKey: "order-1043",
            },
          ],
        },
      },
      responses: {
        "201": {
          description: "At least one job created",
          schema: "BatchResult",
          example: { items: [{ job: EXAMPLE_JOB, duplicate: false }], created: 1, duplicates: 0 },
        },
        "200": {
          description: "Every job was a duplicate",
          schema: "BatchResult",
          example: { items: [{ job: EXAMPLE_JOB, duplicate: true }], created: 0, duplicates: 1 },
        },
        ...BODY_ERRORS,
        "422": {
          description: "Some jobs are invalid; none was added",
          schema: "Error",
          example: errorExample("INVALID_PAYLOAD", "1 of 2 jobs are invalid; none was added", [
            { index: 1, code: "INVALID_PAYLOAD", message: 'invalid payload for task "send-email"' },
          ]),
        },
        ...COMMON_ERRORS,
      },
    },
    {
      method: "get",
      path: "/jobs",
      operationId: "listJobs",
      summary: "List jobs, newest first",
      description: "Keyset pagination: pass `nextCursor` back as `cursor` for the next page.",
      tag: "jobs",
      parameters: queryParameters(ListJobsQuerySchema, {
        queue: "default",
        task: "send-email",
        status: "failed",
        limit: "50",
        cursor: "1042",
      }),
      responses: {
        "200": {
          description: "A page of jobs",
          schema: "JobPage",
          example: { jobs: [EXAMPLE_JOB], nextCursor: "1042" },
        },
        "400": {
          description: "A query parameter is invalid",
          schema: "Error",
          example: errorExample("VALIDATION_FAILED", "invalid query: limit", [
            { path: "limit", message: "Too big: expected number to be <=500", code: "too_big" },
          ]),
        },
        ...COMMON_ERRORS,
      },
    },
    {
      method: "get",
      path: "/jobs/{id}",
      operationId: "getJob",
      summary: "Get a job",
      tag: "jobs",
      parameters: [jobId],
      responses: {
        "200": { description: "The job", schema: "Job", example: EXAMPLE_JOB },
        ...ID_ERRORS,
        ...COMMON_ERRORS,
      },
    },
    {
      method: "get",
      path: "/jobs/{id}/events",
      operationId: "getJobEvents",
      summary: "A job's timeline",
      description: "Lifecycle steps and handler log lines, oldest first, paginated.",
      tag: "jobs",
      parameters: [jobId, ...queryParameters(EventsQuerySchema, { limit: "100", cursor: "77" })],
      responses: {
        "200": {
          description: "A page of the timeline",
          schema: "EventPage",
          example: EXAMPLE_EVENT_PAGE,
        },
        ...ID_ERRORS,
        ...COMMON_ERRORS,
      },
    },
    {
      method: "post",
      path: "/jobs/{id}/cancel",
      operationId: "cancelJob",
      summary: "Cancel a job",
      description:
        "Pending or retrying: cancelled at once. Running: its handler's abort signal fires and the job ends cancelled. Finished: 409.",
      tag: "jobs",
      parameters: [jobId],
      body: {
        schema: "CancelRequest",
        required: false,
        example: { reason: "customer withdrew the order" },
      },
      responses: {
        "200": {
          description: "Cancelled; `was` is the status it had",
          schema: "CancelResult",
          example: {
            job: { ...runningJob, status: "cancelled", finishedAt: "2025-01-01T12:00:01.000Z" },
            was: "running",
          },
        },
        ...ID_ERRORS,
        "409": {
          description: "The job has already finished",
          schema: "Error",
          example: errorExample(
            "CONFLICT",
            "job 1042 is completed: only pending, retrying or running jobs can be cancelled",
            { status: "completed" },
          ),
        },
        ...BODY_ERRORS,
        ...COMMON_ERRORS,
      },
    },
    {
      method: "post",
      path: "/jobs/{id}/retry",
      operationId: "retryJob",
      summary: "Retry a failed or cancelled job",
      description: "Sends the job back to pending with a fresh attempt budget.",
      tag: "jobs",
      parameters: [jobId],
      responses: {
        "200": { description: "Re-queued", schema: "CancelResult", example: { job: EXAMPLE_JOB } },
        ...ID_ERRORS,
        "409": {
          description: "The job is not failed or cancelled",
          schema: "Error",
          example: errorExample(
            "CONFLICT",
            "job 1042 is running: only failed or cancelled jobs can be retried",
            { status: "running" },
          ),
        },
        ...COMMON_ERRORS,
      },
    },
    {
      method: "get",
      path: "/queues",
      operationId: "listQueues",
      summary: "Queues with counts, oldest ready age, pause flag and workers",
      tag: "queues",
      responses: {
        "200": {
          description: "Every known queue",
          schema: "QueueList",
          example: { queues: [EXAMPLE_QUEUE] },
        },
        ...COMMON_ERRORS,
      },
    },
    ...(["pause", "resume"] as const).map(
      (action): OperationSpec => ({
        method: "post",
        path: `/queues/{name}/${action}`,
        operationId: `${action}Queue`,
        summary: action === "pause" ? "Pause a queue (no worker claims from it)" : "Resume a queue",
        tag: "queues",
        parameters: [queueName],
        responses: {
          "200": {
            description: "The queue's settings",
            schema: "QueueSettings",
            example: {
              name: "default",
              paused: action === "pause",
              updatedAt: "2025-01-01T12:00:00.000Z",
            },
          },
          "400": {
            description: "Invalid queue name",
            schema: "Error",
            example: errorExample("VALIDATION_FAILED", "invalid queue name"),
          },
          ...COMMON_ERRORS,
        },
      }),
    ),
    {
      method: "get",
      path: "/health",
      operationId: "health",
      summary: "Liveness (no database)",
      tag: "system",
      public: true,
      responses: {
        "200": { description: "The process is up", schema: "Health", example: { status: "ok" } },
      },
    },
    {
      method: "get",
      path: "/ready",
      operationId: "ready",
      summary: "Readiness: database reachable and migrations current",
      tag: "system",
      responses: {
        "200": {
          description: "Ready",
          schema: "Ready",
          example: { status: "ready", schema: { current: 2, latest: 2 } },
        },
        "503": {
          description:
            "Database unreachable (DATABASE_UNAVAILABLE) or schema not current (NOT_READY)",
          schema: "Error",
          example: errorExample(
            "NOT_READY",
            "database schema is not at the version this code expects",
            { current: 1, latest: 2 },
          ),
        },
        "401": COMMON_ERRORS["401"]!,
        "403": COMMON_ERRORS["403"]!,
      },
    },
    {
      method: "get",
      path: "/metrics",
      operationId: "metrics",
      summary: "Prometheus metrics",
      tag: "system",
      public: options.metricsPublic,
      responses: {
        "200": {
          description: "Prometheus text format",
          contentType: "text/plain",
          example:
            '# HELP pgwake_queue_depth Jobs waiting in the queue (pending + retrying), at scrape time\n# TYPE pgwake_queue_depth gauge\npgwake_queue_depth{queue="default"} 12\n',
        },
        ...(options.metricsPublic
          ? {}
          : { "401": COMMON_ERRORS["401"]!, "403": COMMON_ERRORS["403"]! }),
      },
    },
    {
      method: "get",
      path: "/openapi.json",
      operationId: "openapi",
      summary: "This document",
      tag: "docs",
      responses: {
        "200": {
          description: "OpenAPI 3.1",
          contentType: "application/json",
          example: { openapi: "3.1.0" },
        },
        "401": COMMON_ERRORS["401"]!,
        "403": COMMON_ERRORS["403"]!,
      },
    },
    {
      method: "get",
      path: "/docs",
      operationId: "docs",
      summary: "Swagger UI (served locally, works offline)",
      tag: "docs",
      responses: {
        "200": { description: "HTML page", contentType: "text/html", example: "<!doctype html>…" },
        "401": COMMON_ERRORS["401"]!,
        "403": COMMON_ERRORS["403"]!,
      },
    },
    {
      method: "get",
      path: "/docs/{file}",
      operationId: "docsAsset",
      summary: "Swagger UI's static files",
      tag: "docs",
      parameters: [
        {
          name: "file",
          in: "path",
          required: true,
          schema: { type: "string" },
          example: "swagger-ui.css",
        },
      ],
      responses: {
        "200": {
          description: "The file",
          contentType: "text/css",
          example: "/* swagger-ui.css */",
        },
        "404": {
          description: "Not a Swagger UI file",
          schema: "Error",
          example: errorExample("NOT_FOUND", "no such file"),
        },
        "401": COMMON_ERRORS["401"]!,
        "403": COMMON_ERRORS["403"]!,
      },
    },
  ];
}

/** The OpenAPI 3.1 document of the API, generated from the zod schemas the routes validate with. */
export function buildOpenApi(options: {
  metricsPublic: boolean;
  batchLimit: number;
  bodyLimitBytes: number;
  tasks: TaskRegistry;
  authRequired: boolean;
  version: string;
}): Record<string, unknown> {
  const generated = z.toJSONSchema(z.globalRegistry, {
    uri: (id) => `#/components/schemas/${id}`,
    unrepresentable: "any",
  }) as { schemas: Record<string, Record<string, unknown>> };
  const schemas: Record<string, unknown> = {};
  for (const name of COMPONENTS) {
    const { $schema: _s, $id: _i, ...schema } = generated.schemas[name] ?? {};
    schemas[name] = schema;
  }
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of operations(options)) {
    const responses: Record<string, unknown> = {};
    for (const [status, spec] of Object.entries(op.responses)) {
      const type = spec.contentType ?? "application/json";
      responses[status] = {
        description: spec.description,
        ...(spec.headers ? { headers: spec.headers } : {}),
        content: {
          [type]: {
            schema: spec.schema ? ref(spec.schema) : { type: "string" },
            example: spec.example,
          },
        },
      };
    }
    paths[op.path] ??= {};
    paths[op.path]![op.method] = {
      operationId: op.operationId,
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      tags: [op.tag],
      ...(op.public ? { security: [] } : {}),
      ...(op.parameters ? { parameters: op.parameters } : {}),
      ...(op.body
        ? {
            requestBody: {
              required: op.body.required,
              content: {
                "application/json": {
                  schema: ref(op.body.schema),
                  ...(op.body.examples
                    ? { examples: op.body.examples }
                    : { example: op.body.example }),
                },
              },
            },
          }
        : {}),
      responses,
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "pgwake",
      version: options.version,
      description: `A job queue that lives in PostgreSQL. Errors are always \`{ "error": { "code", "message", "details"? } }\`. Request bodies are JSON, at most ${options.bodyLimitBytes} bytes. Every response carries \`x-request-id\` (yours, or a new one).`,
    },
    tags: [
      { name: "jobs", description: "Submit, inspect, cancel and retry jobs" },
      { name: "queues", description: "Queue statistics, pause and resume" },
      { name: "system", description: "Health, readiness and metrics" },
      { name: "docs", description: "This documentation" },
    ],
    ...(options.authRequired ? { security: [{ bearer: [] }] } : {}),
    paths,
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "One of the configured API keys" },
      },
    },
  };
}
