import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { BULK_STATUSES, type BulkAction, DEFAULT_BULK_COUNT_CAP } from "../../jobs/bulk.ts";
import type { ApiDeps } from "../context.ts";
import { bodyRefusals, invalidBody, jsonResponse } from "../responses.ts";

/** The tag of the bulk operations (the document declares it). */
export const BULK_TAG = {
  name: "bulk",
  description:
    "Retry, cancel or delete every job matching a filter (queue, task, statuses, time range), in bounded batches on the server; safe to repeat.",
};

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
const time = (description: string) =>
  z.iso.datetime({ offset: true }).optional().meta({ description });

/** Statuses a body may name: those the action takes. */
function statusesOf(action: BulkAction) {
  const statuses = BULK_STATUSES[action] as readonly [string, ...string[]];
  const defaults = { retry: " (default failed)", cancel: " (default all)", delete: "" };
  return z
    .array(z.enum(statuses))
    .min(1)
    .max(statuses.length)
    .meta({
      description: `Only jobs in these statuses: any of ${statuses.join(", ")}${defaults[action]}.`,
    });
}

const filterFields = {
  queue: z
    .string()
    .regex(NAME, "a queue name: 1-128 of A-Z a-z 0-9 _ . : -")
    .optional()
    .meta({ description: "Only this queue." }),
  task: z
    .string()
    .regex(NAME, "a task name: 1-128 of A-Z a-z 0-9 _ . : -")
    .optional()
    .meta({ description: "Only this task." }),
  createdAfter: time("Only jobs submitted at or after this time (ISO 8601)."),
  createdBefore: time("Only jobs submitted before this time (ISO 8601)."),
  dryRun: z
    .boolean()
    .optional()
    .meta({
      description: `Count the matching jobs (up to ${DEFAULT_BULK_COUNT_CAP}) and change nothing.`,
    }),
};

const finishedBefore = time(
  "Only jobs that finished before this time (ISO 8601). Send the time you looked at the jobs: a repeat of the request then leaves alone jobs that finished since, such as retried jobs that failed again.",
);

/** Refuses a time range that ends before it starts (it would match nothing, silently). */
function inOrder(body: { createdAfter?: string | undefined; createdBefore?: string | undefined }) {
  return (
    body.createdAfter === undefined ||
    body.createdBefore === undefined ||
    Date.parse(body.createdAfter) < Date.parse(body.createdBefore)
  );
}
const ORDER = { message: "createdAfter must be before createdBefore", path: ["createdBefore"] };

export const BulkRetrySchema = z
  .strictObject({ ...filterFields, status: statusesOf("retry").optional(), finishedBefore })
  .refine(inOrder, ORDER)
  .meta({
    id: "BulkRetry",
    description: "Which failed or cancelled jobs to send back to their queue.",
  });

export const BulkCancelSchema = z
  .strictObject({ ...filterFields, status: statusesOf("cancel").optional() })
  .refine(inOrder, ORDER)
  .meta({ id: "BulkCancel", description: "Which jobs not yet finished to cancel." });

// Deleting names what it deletes: a body of `{}` must not empty the history.
export const BulkDeleteSchema = z
  .strictObject({ ...filterFields, status: statusesOf("delete"), finishedBefore })
  .refine(inOrder, ORDER)
  .meta({ id: "BulkDelete", description: "Which finished jobs to delete." });

export const BulkResultSchema = z
  .object({
    action: z.enum(["retry", "cancel", "delete"]),
    dryRun: z.boolean(),
    affected: z.int().min(0).meta({
      description:
        "Jobs retried, cancelled or deleted by this request; in a dry run, jobs that match.",
    }),
    skipped: z.int().min(0).meta({
      description:
        "Retry: failed jobs left as they are because a live job now holds their idempotency key. Otherwise 0.",
    }),
    capped: z.boolean().meta({
      description: `Dry run: the count stopped at ${DEFAULT_BULK_COUNT_CAP}; at least that many match.`,
    }),
    batches: z
      .int()
      .min(0)
      .meta({ description: "Statements the server ran, each a bounded batch." }),
  })
  .meta({ id: "BulkResult", description: "What a bulk request did." });

/** The bulk operations: retry, cancel and delete every job matching a filter. */
export function bulkRouteDefinitions(deps: Pick<ApiDeps, "exampleTask" | "bodyLimitBytes">) {
  const task = deps.exampleTask.name;
  // Examples name a past hour, so "Try it out" (and the document's own test) changes nothing.
  const hour = {
    createdAfter: "2025-01-01T12:00:00.000Z",
    createdBefore: "2025-01-01T13:00:00.000Z",
  };
  const result = (action: BulkAction, affected: number, dryRun = false) =>
    ({ action, dryRun, affected, skipped: 0, capped: false, batches: 3 }) as const;
  const refusals = bodyRefusals(deps.bodyLimitBytes);
  const body = <S extends z.ZodType>(schema: S, examples: Record<string, z.input<S>>) => ({
    required: true,
    content: {
      "application/json": {
        schema,
        examples: Object.fromEntries(
          Object.entries(examples).map(([name, value]) => [name, { summary: name, value }]),
        ),
      },
    },
  });

  const bulkRetry = createRoute({
    method: "post",
    path: "/jobs/bulk/retry",
    operationId: "bulkRetryJobs",
    tags: [BULK_TAG.name],
    summary: "Retry every failed job matching a filter",
    description:
      "Sends every matching failed (or cancelled) job back to its queue, ready now with a fresh attempt budget, as `POST /jobs/{id}/retry` does one. Works through the dead-letter index in batches, each its own statement; answers once all are done, with the count. A repeat finds nothing more to do (retried jobs are no longer failed). A job whose idempotency key another live job holds now is left failed and counted in `skipped`.",
    request: {
      body: body(BulkRetrySchema, {
        "Failed jobs of the default queue, one hour": {
          queue: "default",
          task,
          status: ["failed"],
          ...hour,
        },
        "How many would be retried": {
          queue: "default",
          status: ["failed"],
          ...hour,
          dryRun: true,
        },
      }),
    },
    responses: {
      200: jsonResponse("The jobs retried", BulkResultSchema, result("retry", 1000)),
      400: invalidBody(
        "bulk request",
        "status.0",
        'Invalid option: expected one of "failed"|"cancelled"',
      ),
      ...refusals,
    },
  });

  const bulkCancel = createRoute({
    method: "post",
    path: "/jobs/bulk/cancel",
    operationId: "bulkCancelJobs",
    tags: [BULK_TAG.name],
    summary: "Cancel every job matching a filter",
    description:
      "Cancels every matching job not yet finished, as `POST /jobs/{id}/cancel` does one: waiting jobs at once, running ones by their abort signal. Batches of live jobs, each its own short transaction; a job whose status changed meanwhile is checked against the filter again. A repeat finds nothing more to do.",
    request: {
      body: body(BulkCancelSchema, {
        "Waiting jobs of a task, one hour": {
          queue: "default",
          task,
          status: ["scheduled", "pending", "retrying"],
          ...hour,
        },
        "How many would be cancelled": { queue: "default", ...hour, dryRun: true },
      }),
    },
    responses: {
      200: jsonResponse("The jobs cancelled", BulkResultSchema, result("cancel", 250)),
      400: invalidBody(
        "bulk request",
        "status.0",
        'Invalid option: expected one of "scheduled"|"pending"|"running"|"retrying"',
      ),
      ...refusals,
    },
  });

  const bulkDelete = createRoute({
    method: "post",
    path: "/jobs/bulk/purge",
    operationId: "bulkDeleteJobs",
    tags: [BULK_TAG.name],
    summary: "Delete every finished job matching a filter",
    description:
      "Deletes matching finished jobs (completed, failed or cancelled: name them in `status`) with their events, and frees the idempotency keys they held. Jobs not yet finished are never deleted: cancel them first. Failed and cancelled jobs are found through the dead-letter index; completed ones by walking history in batches. A repeat finds nothing more to do. The per-minute counts of `GET /queues` (completed) keep what happened.",
    request: {
      body: body(BulkDeleteSchema, {
        "Failed jobs of the default queue, one hour": {
          queue: "default",
          status: ["failed"],
          ...hour,
        },
        "How many completed jobs would go": {
          status: ["completed"],
          createdBefore: hour.createdAfter,
          dryRun: true,
        },
      }),
    },
    responses: {
      200: jsonResponse("The jobs deleted", BulkResultSchema, result("delete", 1000)),
      400: invalidBody(
        "bulk request",
        "status",
        "Invalid input: expected array, received undefined",
      ),
      ...refusals,
    },
  });

  return { bulkRetry, bulkCancel, bulkDelete };
}
