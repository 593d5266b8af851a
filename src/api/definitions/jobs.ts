import { createRoute } from "@hono/zod-openapi";
import type { ApiDeps } from "../context.ts";
import { bodyRefusals, failure, invalidBody, jobIdRefusals, jsonResponse } from "../responses.ts";
import {
  BatchResultSchema,
  CancelRequestSchema,
  CancelResultSchema,
  EventPageSchema,
  EventsQuerySchema,
  JobDetailSchema,
  JobIdParamsSchema,
  JobPageSchema,
  ListJobsQuerySchema,
  RetryRequestSchema,
  RetryResultSchema,
  SubmitBatchSchema,
  SubmitHeadersSchema,
  SubmitJobSchema,
  SubmittedJobSchema,
} from "../schemas.ts";

const LOCATION = {
  Location: { description: "The job's URL.", schema: { type: "string" as const } },
};

/** The job operations: submit (one or many), list, read, timeline, cancel, retry. */
export function jobRouteDefinitions(
  deps: Pick<ApiDeps, "examples" | "batchLimit" | "bodyLimitBytes" | "exampleTask">,
) {
  const { examples, exampleTask } = deps;
  const refusedTask = failure(
    "The payload does not match the task's schema (INVALID_PAYLOAD), or the server does not know the task (UNKNOWN_TASK)",
    ["INVALID_PAYLOAD", "UNKNOWN_TASK"],
    {
      code: "UNKNOWN_TASK",
      message: 'unknown task "send-emial"',
      details: { knownTasks: [exampleTask.name] },
    },
  );

  const submitJob = createRoute({
    method: "post",
    path: "/jobs",
    operationId: "submitJob",
    tags: ["jobs"],
    summary: "Submit a job",
    description:
      "Adds one job and answers once its row is committed. A repeat of an idempotency key in the same queue answers 200 with the original job and `duplicate: true`. When the server knows the task, the payload is checked against its schema (422 with the schema's issues).",
    request: {
      headers: SubmitHeadersSchema,
      body: {
        required: true,
        content: { "application/json": { schema: SubmitJobSchema, examples: examples.submit } },
      },
    },
    responses: {
      201: jsonResponse("Added", SubmittedJobSchema, examples.submitted, LOCATION),
      200: jsonResponse(
        "A repeat of an idempotency key: the original job",
        SubmittedJobSchema,
        examples.duplicate,
        LOCATION,
      ),
      400: invalidBody("job", "priority", "Too big: expected number to be <=1000"),
      ...bodyRefusals(deps.bodyLimitBytes),
      422: refusedTask,
    },
  });

  const submitJobs = createRoute({
    method: "post",
    path: "/jobs/batch",
    operationId: "submitJobs",
    tags: ["jobs"],
    summary: "Submit many jobs at once",
    description: `Adds up to ${deps.batchLimit} jobs in one statement: all or none. Idempotency is per job (its idempotencyKey; the Idempotency-Key header is refused here). Items answer in the order given.`,
    request: {
      body: {
        required: true,
        content: { "application/json": { schema: SubmitBatchSchema, example: examples.batch } },
      },
    },
    responses: {
      201: jsonResponse("At least one job added", BatchResultSchema, examples.batchCreated),
      200: jsonResponse(
        "Every job was a repeat of its idempotency key",
        BatchResultSchema,
        examples.batchDuplicates,
      ),
      400: invalidBody(
        "batch",
        "jobs",
        `${deps.batchLimit + 1} jobs given, at most ${deps.batchLimit}`,
      ),
      ...bodyRefusals(deps.bodyLimitBytes),
      422: failure(
        "Some jobs name an unknown task or carry an invalid payload; none was added. `details` lists them by index.",
        ["INVALID_PAYLOAD", "UNKNOWN_TASK"],
        {
          message: "1 of 2 jobs are invalid; none was added",
          details: [{ index: 1, code: "UNKNOWN_TASK", message: 'unknown task "send-emial"' }],
        },
      ),
    },
  });

  const listJobs = createRoute({
    method: "get",
    path: "/jobs",
    operationId: "listJobs",
    tags: ["jobs"],
    summary: "List jobs, newest first",
    description:
      "Filtered by queue, task and status. Keyset pages: pass `nextCursor` back as `cursor` for the next one; jobs added meanwhile never shift a page.",
    request: { query: ListJobsQuerySchema },
    responses: {
      200: jsonResponse("A page of jobs", JobPageSchema, examples.jobPage),
      400: failure("A query parameter is invalid", ["VALIDATION_FAILED"], {
        message: "invalid query: limit",
        details: [
          { path: "limit", message: "Too big: expected number to be <=500", code: "too_big" },
        ],
      }),
    },
  });

  const getJob = createRoute({
    method: "get",
    path: "/jobs/{id}",
    operationId: "getJob",
    tags: ["jobs"],
    summary: "Get a job",
    description:
      "A live job that has not started says why in `waitingFor`: its queue paused, its run time ahead, a limit of its queue or concurrency key at its maximum, or nothing but a free worker.",
    request: { params: JobIdParamsSchema },
    responses: {
      200: jsonResponse("The job, and why it waits", JobDetailSchema, examples.waiting),
      ...jobIdRefusals(),
    },
  });

  const idRefusals = jobIdRefusals();
  const listJobEvents = createRoute({
    method: "get",
    path: "/jobs/{id}/events",
    operationId: "listJobEvents",
    tags: ["jobs"],
    summary: "A job's timeline",
    description:
      "Its steps (enqueued, claimed, attempts failed, retries, lease expiries, cancellation, completion) and its handler's log lines, oldest first, in pages.",
    request: { params: JobIdParamsSchema, query: EventsQuerySchema },
    responses: {
      200: jsonResponse("A page of the timeline", EventPageSchema, examples.eventPage),
      400: failure(
        "The id is not a positive integer (INVALID_ID), or a query parameter is invalid (VALIDATION_FAILED)",
        ["INVALID_ID", "VALIDATION_FAILED"],
        { message: "a job id is a positive integer", details: { id: "abc" } },
      ),
      404: idRefusals[404],
    },
  });

  const cancelJob = createRoute({
    method: "post",
    path: "/jobs/{id}/cancel",
    operationId: "cancelJob",
    tags: ["jobs"],
    summary: "Cancel a job",
    description:
      "A pending or retrying job is cancelled at once. A running job is marked cancelled and its handler's abort signal fires. A finished job answers 409.",
    request: {
      params: JobIdParamsSchema,
      body: {
        required: false,
        content: {
          "application/json": {
            schema: CancelRequestSchema,
            example: { reason: "no longer needed" },
          },
        },
      },
    },
    responses: {
      200: jsonResponse(
        "Cancelled; `was` is the status it had",
        CancelResultSchema,
        examples.cancelled,
      ),
      400: failure(
        "The id is not a positive integer (INVALID_ID), or the body is invalid (INVALID_JSON, VALIDATION_FAILED)",
        ["INVALID_ID", "INVALID_JSON", "VALIDATION_FAILED"],
        { message: "a job id is a positive integer", details: { id: "abc" } },
      ),
      404: idRefusals[404],
      409: failure("The job has already finished", ["CONFLICT"], {
        message: "job 1 is completed: only pending, retrying or running jobs can be cancelled",
        details: { status: "completed" },
      }),
      ...bodyRefusals(deps.bodyLimitBytes),
    },
  });

  const retryJob = createRoute({
    method: "post",
    path: "/jobs/{id}/retry",
    operationId: "retryJob",
    tags: ["jobs"],
    summary: "Retry a failed or cancelled job",
    description:
      "Sends the job back to pending, to run now with a fresh attempt budget. Any other status answers 409.",
    request: {
      params: JobIdParamsSchema,
      body: {
        required: false,
        content: { "application/json": { schema: RetryRequestSchema, example: {} } },
      },
    },
    responses: {
      200: jsonResponse("Pending again", RetryResultSchema, examples.retried),
      400: failure(
        "The id is not a positive integer (INVALID_ID), or the body is not `{}` (INVALID_JSON, VALIDATION_FAILED)",
        ["INVALID_ID", "INVALID_JSON", "VALIDATION_FAILED"],
        { message: "a job id is a positive integer", details: { id: "abc" } },
      ),
      404: idRefusals[404],
      409: failure("The job is not failed or cancelled", ["CONFLICT"], {
        message: "job 1 is running: only failed or cancelled jobs can be retried",
        details: { status: "running", retryable: ["failed", "cancelled"] },
      }),
      ...bodyRefusals(deps.bodyLimitBytes),
    },
  });

  return { submitJob, submitJobs, listJobs, getJob, listJobEvents, cancelJob, retryJob };
}
