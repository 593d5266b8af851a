import { OpenAPIHono } from "@hono/zod-openapi";
import { type Context, context, trace } from "@opentelemetry/api";
import type { Context as HonoContext } from "hono";
import { keyHolder } from "../../jobs/control.ts";
import { compareLockOrder, DEFAULT_QUEUE, lockOrderKey, type NewJob } from "../../jobs/enqueue.ts";
import { listJobs } from "../../jobs/list.ts";
import { TERMINAL_STATUSES } from "../../jobs/types.ts";
import { contextFrom, inSpan, SpanKind } from "../../tracing.ts";
import type { ApiDeps } from "../context.ts";
import { jobRouteDefinitions } from "../definitions/jobs.ts";
import { ApiError, toApiError } from "../errors.ts";
import { mountRoute } from "../route.ts";
import type { SubmitJob } from "../schemas.ts";
import { eventJson, jobJson } from "../serialize.ts";
import type { ApiEnv } from "../types.ts";
import { findUnstorable, type Issue } from "../validation.ts";

const DEFAULT_PAGE = 50;
const DEFAULT_EVENTS_PAGE = 100;
/** Statuses of a job that waits to start (`waitingFor`). */
const LIVE_WAITING = new Set(["scheduled", "pending", "retrying"]);

/**
 * A submission over HTTP in a `pgwake.submit` span: a child of the request's span when the
 * application traces HTTP itself, else of the caller's `traceparent` header (W3C), else a root.
 */
function submissionSpan<T>(
  c: HonoContext<ApiEnv>,
  jobs: number,
  submit: (traceContext: Context) => Promise<T>,
): Promise<T> {
  const active = context.active();
  const traced = trace.getSpan(active) !== undefined;
  const parent = traced
    ? active
    : contextFrom(c.req.header("traceparent"), c.req.header("tracestate"), active);
  return inSpan(
    "pgwake.submit",
    {
      // The server span, unless the application's HTTP instrumentation made one.
      kind: traced ? SpanKind.INTERNAL : SpanKind.SERVER,
      parent,
      attributes: {
        "http.request.method": c.req.method,
        "http.route": c.req.routePath,
        "pgwake.request_id": c.get("requestId"),
        "messaging.batch.message_count": jobs,
      },
    },
    (_span, traceContext) => submit(traceContext),
  );
}

/** Job routes: submit (one or many), read, list, timeline, cancel, retry. */
export function jobRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const { pgwake } = deps;
  const app = new OpenAPIHono<ApiEnv>();
  const routes = jobRouteDefinitions(deps);
  const jobs = { access: "key", database: true } as const;
  const byId = {
    ...jobs,
    invalidParams: (_issues: Issue[], raw: Record<string, string>) =>
      new ApiError(400, "INVALID_ID", "a job id is a positive integer", {
        details: { id: String(raw.id ?? "").slice(0, 64) },
      }),
  };

  /** Turns a validated body into a NewJob, or throws the API error. */
  function toNewJob(body: SubmitJob, requestId: string, headerKey?: string): NewJob {
    const unstorable = findUnstorable(body);
    if (unstorable) {
      throw new ApiError(400, "VALIDATION_FAILED", `invalid job: ${unstorable.path}`, {
        details: [unstorable],
      });
    }
    if (
      headerKey !== undefined &&
      body.idempotencyKey !== undefined &&
      headerKey !== body.idempotencyKey
    ) {
      throw new ApiError(
        400,
        "VALIDATION_FAILED",
        "the Idempotency-Key header and idempotencyKey differ",
        {
          details: [
            {
              path: "idempotencyKey",
              message: "differs from the Idempotency-Key header",
              code: "conflict",
            },
          ],
        },
      );
    }
    if (!deps.acceptUnknownTasks && !pgwake.knowsTask(body.task)) {
      throw new ApiError(422, "UNKNOWN_TASK", `unknown task "${body.task}"`, {
        details: { knownTasks: pgwake.knownTaskNames() },
      });
    }
    const job: NewJob = {
      task: body.task,
      ...(body.payload !== undefined ? { payload: body.payload } : {}),
      ...(body.queue !== undefined ? { queue: body.queue } : {}),
      ...(body.priority !== undefined ? { priority: body.priority } : {}),
      ...(body.runAt !== undefined ? { runAt: new Date(body.runAt) } : {}),
      ...(body.delayMs !== undefined ? { delayMs: body.delayMs } : {}),
      ...(body.maxAttempts !== undefined ? { maxAttempts: body.maxAttempts } : {}),
      ...(body.timeoutMs !== undefined ? { timeoutMs: body.timeoutMs } : {}),
      ...(body.keyMode !== undefined ? { keyMode: body.keyMode } : {}),
      ...(body.concurrencyKey !== undefined ? { concurrencyKey: body.concurrencyKey } : {}),
      requestId,
    };
    const key = body.idempotencyKey ?? headerKey;
    if (key !== undefined) job.idempotencyKey = key;
    return job;
  }

  mountRoute(
    app,
    deps,
    routes.submitJob,
    async (c, { body, headers }) => {
      const { task, payload, ...options } = toNewJob(
        body,
        c.get("requestId"),
        storableHeader(headers["idempotency-key"]),
      );
      // Validates a known task's payload (422 with the schema's issues); concurrent submissions
      // share an insert (see `Pgwake.enqueue`).
      const { job: stored, duplicate } = await submissionSpan(c, 1, (traceContext) =>
        pgwake.enqueue(task, payload, { ...options, traceContext }),
      );
      if (!duplicate) deps.metrics.enqueued.inc({ queue: stored.queue, task: stored.task });
      return {
        status: duplicate ? 200 : 201,
        body: { job: jobJson(stored), duplicate },
        headers: { Location: `/jobs/${stored.id}` },
      };
    },
    { ...jobs, bodyName: "job" },
  );

  mountRoute(
    app,
    deps,
    routes.submitJobs,
    async (c, { body }) => {
      if (c.req.header("idempotency-key") !== undefined) {
        throw new ApiError(
          400,
          "VALIDATION_FAILED",
          "a batch takes idempotencyKey per job, not the Idempotency-Key header",
        );
      }
      const requestId = c.get("requestId");
      const prepared: Array<{ job: NewJob; lockOrder: string; index: number }> = [];
      const problems: Array<{ index: number; code: string; message: string; details?: unknown }> =
        [];
      body.jobs.forEach((item, index) => {
        try {
          const job = toNewJob(item, requestId);
          // Validates a known task's payload and resolves its queue from the task's defaults.
          const queue = pgwake.prepare(job).queue ?? DEFAULT_QUEUE;
          prepared.push({ job, lockOrder: lockOrderKey(queue, job.idempotencyKey), index });
        } catch (error) {
          const apiError = toApiError(error);
          if (apiError.status >= 500) throw error;
          problems.push({
            index,
            code: apiError.code,
            message: apiError.message,
            details: apiError.details,
          });
        }
      });
      if (problems.length > 0) {
        const status = problems.every(
          (p) => p.code === "INVALID_PAYLOAD" || p.code === "UNKNOWN_TASK",
        )
          ? 422
          : 400;
        throw new ApiError(
          status,
          status === 422 ? "INVALID_PAYLOAD" : "VALIDATION_FAILED",
          `${problems.length} of ${body.jobs.length} jobs are invalid; none was added`,
          { details: problems.slice(0, 50) },
        );
      }
      // (queue, key) order: concurrent batches sharing keys then lock them in the same order.
      const ordered = [...prepared].sort(compareLockOrder);
      const results = await submissionSpan(c, ordered.length, (traceContext) =>
        pgwake.enqueueMany(
          ordered.map((p) => p.job),
          { traceContext },
        ),
      );
      const items = new Array<{ job: ReturnType<typeof jobJson>; duplicate: boolean }>(
        ordered.length,
      );
      let created = 0;
      ordered.forEach((p, i) => {
        const result = results[i]!;
        if (!result.duplicate) {
          created++;
          deps.metrics.enqueued.inc({ queue: result.job.queue, task: result.job.task });
        }
        items[p.index] = { job: jobJson(result.job), duplicate: result.duplicate };
      });
      return {
        status: created > 0 ? 201 : 200,
        body: { items, created, duplicates: items.length - created },
      };
    },
    {
      ...jobs,
      bodyName: "batch",
      // Counted before the schema parses every item: a body of many small jobs costs nothing.
      beforeParse: (raw) => {
        const given = (raw as { jobs?: unknown } | null)?.jobs;
        if (!Array.isArray(given) || given.length <= deps.batchLimit) return;
        throw new ApiError(
          400,
          "VALIDATION_FAILED",
          `a batch holds at most ${deps.batchLimit} jobs`,
          {
            details: [
              {
                path: "jobs",
                message: `${given.length} jobs given, at most ${deps.batchLimit}`,
                code: "too_big",
              },
            ],
          },
        );
      },
    },
  );

  mountRoute(
    app,
    deps,
    routes.listJobs,
    async (_c, { query }) => {
      const page = await listJobs(pgwake.pool, deps.sql, {
        ...(query.queue !== undefined ? { queue: query.queue } : {}),
        ...(query.task !== undefined ? { task: query.task } : {}),
        ...(query.status !== undefined ? { statuses: query.status } : {}),
        ...(query.cursor !== undefined ? { beforeId: query.cursor } : {}),
        ...(query.createdAfter !== undefined ? { createdAfter: new Date(query.createdAfter) } : {}),
        ...(query.createdBefore !== undefined
          ? { createdBefore: new Date(query.createdBefore) }
          : {}),
        limit: query.limit ?? DEFAULT_PAGE,
      });
      return {
        status: 200,
        body: { jobs: page.jobs.map(jobJson), nextCursor: page.nextBeforeId },
      };
    },
    jobs,
  );

  mountRoute(
    app,
    deps,
    routes.getJob,
    async (_c, { params }) => {
      const job = await pgwake.getJob(params.id);
      if (!job) throw jobNotFound(params.id);
      const waitingFor = LIVE_WAITING.has(job.status) ? await pgwake.waitingFor(job.id) : null;
      return { status: 200, body: { ...jobJson(job), waitingFor } };
    },
    byId,
  );

  mountRoute(
    app,
    deps,
    routes.listJobEvents,
    async (_c, { params, query }) => {
      const page = await pgwake.timeline(params.id, {
        after: query.cursor ?? 0,
        limit: query.limit ?? DEFAULT_EVENTS_PAGE,
      });
      if (!page) throw jobNotFound(params.id);
      return {
        status: 200,
        body: { events: page.events.map(eventJson), nextCursor: page.nextCursor },
      };
    },
    byId,
  );

  mountRoute(
    app,
    deps,
    routes.cancelJob,
    async (_c, { params, body }) => {
      const { id } = params;
      const unstorable = body.reason === undefined ? null : findUnstorable(body.reason, "reason");
      if (unstorable) {
        throw new ApiError(400, "VALIDATION_FAILED", "invalid reason", { details: [unstorable] });
      }
      const [cancelled] = await pgwake.cancel([id], body.reason);
      if (cancelled) {
        return { status: 200, body: { job: jobJson(cancelled.job), was: cancelled.was } };
      }
      const job = await pgwake.getJob(id);
      if (!job) throw jobNotFound(id);
      throw new ApiError(
        409,
        "CONFLICT",
        `job ${id} is ${job.status}: only pending, retrying or running jobs can be cancelled`,
        { details: { status: job.status } },
      );
    },
    byId,
  );

  mountRoute(
    app,
    deps,
    routes.retryJob,
    async (_c, { params }) => {
      const { id } = params;
      const [retried] = await pgwake.retry([id]);
      if (retried) return { status: 200, body: { job: jobJson(retried) } };
      const job = await pgwake.getJob(id);
      if (!job) throw jobNotFound(id);
      const holder =
        job.status === "failed" || job.status === "cancelled"
          ? await keyHolder(pgwake.pool, deps.sql, job)
          : null;
      if (holder !== null) {
        throw new ApiError(
          409,
          "CONFLICT",
          `job ${id} cannot be retried: its idempotency key is held by live job ${holder}`,
          { details: { status: job.status, heldBy: holder } },
        );
      }
      throw new ApiError(
        409,
        "CONFLICT",
        `job ${id} is ${job.status}: only failed or cancelled jobs can be retried`,
        {
          details: {
            status: job.status,
            retryable: TERMINAL_STATUSES.filter((s) => s !== "completed"),
          },
        },
      );
    },
    byId,
  );

  return app;
}

function jobNotFound(id: number): ApiError {
  return new ApiError(404, "JOB_NOT_FOUND", `no job ${id}`);
}

/** The Idempotency-Key header, refused when Postgres could not store it. */
function storableHeader(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const issue = findUnstorable(value, "Idempotency-Key");
  if (issue) {
    throw new ApiError(400, "VALIDATION_FAILED", "invalid Idempotency-Key header", {
      details: [issue],
    });
  }
  return value;
}
