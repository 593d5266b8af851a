import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { failure, jsonResponse } from "../api/responses.ts";
import { TimestampSchema } from "../api/schemas.ts";

/** The tag of the dashboard's pages and of the reads made for it (the document declares it). */
export const DASHBOARD_TAG = {
  name: "dashboard",
  description:
    "The web dashboard at /ui (PGWAKE_UI): its pages and files, and the fleet and per-minute statistics it draws.",
};

/** Most minutes `GET /stats/minutes` reads back: one day. */
export const MAX_MINUTES = 1_440;

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
const T = "2025-01-01T12:00:00.000Z";

const page = (path: string, operationId: string, summary: string, params?: z.ZodObject) =>
  createRoute({
    method: "get",
    path,
    operationId,
    tags: [DASHBOARD_TAG.name],
    summary,
    description:
      "An HTML page with no data in it: its script reads the API with the key the browser signed in with (kept in the tab's session storage), so the page needs none.",
    ...(params ? { request: { params } } : {}),
    responses: {
      200: {
        description: "The page",
        content: { "text/html": { schema: z.string(), example: "<!doctype html>…" } },
      },
    },
  });

export const WorkerSchema = z
  .object({
    id: z.string(),
    host: z.string(),
    pid: z.int(),
    queues: z.array(z.string()).meta({ description: "Queues it serves (`*`: every queue)." }),
    concurrency: z.int(),
    running: z.int().meta({ description: "Jobs it holds, as of its last heartbeat." }),
    runningByQueue: z.record(z.string(), z.int()),
    listening: z.boolean().meta({ description: "Its LISTEN connection is up." }),
    startedAt: TimestampSchema,
    lastSeenAt: TimestampSchema.meta({ description: "Its last heartbeat." }),
    leaseExpiresAt: TimestampSchema,
  })
  .meta({ id: "Worker" });

export const WorkerListSchema = z
  .object({ workers: z.array(WorkerSchema) })
  .meta({ id: "WorkerList", description: "Live workers: their lease has not run out." });

export const MinuteSchema = z
  .object({
    queue: z.string(),
    minute: TimestampSchema,
    completed: z.int(),
    failed: z.int(),
    cancelled: z.int(),
    retried: z.int().meta({ description: "Failed attempts that will run again." }),
    runMs: z.int().meta({
      description: "Handler time of the attempts that ended (completed, failed, retried), summed.",
    }),
    waitMs: z.int().meta({
      description:
        "Time from due to claim of the attempts that ended, summed: divide by completed + failed + retried for the mean wait.",
    }),
  })
  .meta({ id: "QueueMinute" });

export const MinutesSchema = z
  .object({
    now: TimestampSchema.meta({ description: "The database's time." }),
    from: TimestampSchema.meta({ description: "The first minute asked for." }),
    minutes: z.array(MinuteSchema).meta({
      description: "By queue, then minute; minutes in which nothing ended are left out.",
    }),
  })
  .meta({ id: "QueueMinutes" });

export const MinutesQuerySchema = z.strictObject({
  minutes: z
    .preprocess(
      (value) => (typeof value === "string" && /^\d{1,5}$/.test(value) ? Number(value) : value),
      z.int().min(1).max(MAX_MINUTES),
    )
    .optional()
    .meta({
      description: `How many minutes back, this one included: 1-${MAX_MINUTES} (default 60).`,
      param: { name: "minutes", in: "query", example: 60 },
    }),
  queue: z
    .string()
    .regex(NAME, "a queue name")
    .optional()
    .meta({ description: "Only this queue.", param: { name: "queue", in: "query" } }),
});

/** The dashboard's pages and files, and the two reads it needs that the API had not. */
export function uiRouteDefinitions() {
  const overview = page("/ui", "uiOverview", "Dashboard: queues, throughput, the fleet");
  const jobs = page("/ui/jobs", "uiJobs", "Dashboard: jobs, filtered, with bulk actions");
  const job = page(
    "/ui/jobs/{id}",
    "uiJob",
    "Dashboard: one job, its error, attempts and timeline",
    z.object({
      id: z.string().meta({
        description: "The job's id (the page says so when there is no such job).",
        param: { name: "id", in: "path", example: "1" },
      }),
    }),
  );
  const queue = page(
    "/ui/queues/{name}",
    "uiQueue",
    "Dashboard: one queue, its charts, limits and keys",
    z.object({
      name: z.string().meta({
        description: "The queue's name.",
        param: { name: "name", in: "path", example: "default" },
      }),
    }),
  );
  const schedules = page(
    "/ui/schedules",
    "uiSchedules",
    "Dashboard: schedules and their next runs",
  );

  const asset = createRoute({
    method: "get",
    path: "/ui/assets/{file}",
    operationId: "uiAsset",
    tags: [DASHBOARD_TAG.name],
    summary: "The dashboard's script, styles and icon (from the package: works offline)",
    request: {
      params: z.object({
        file: z.string().meta({
          description: "One of the dashboard's files.",
          param: { name: "file", in: "path", example: "app.css" },
        }),
      }),
    },
    responses: {
      200: {
        description: "The file",
        content: {
          "text/css": { schema: z.string(), example: ":root { … }" },
          "text/javascript": { schema: z.string(), example: "import …" },
          "image/svg+xml": { schema: z.string(), example: "<svg …>" },
        },
      },
      404: failure("Not a file of the dashboard", ["NOT_FOUND"], { message: "no such file" }),
    },
  });

  const listWorkers = createRoute({
    method: "get",
    path: "/workers",
    operationId: "listWorkers",
    tags: [DASHBOARD_TAG.name],
    summary: "The fleet: live workers with their queues, jobs held and last heartbeat",
    description: "One row per live worker process (a worker whose lease ran out is not listed).",
    responses: {
      200: jsonResponse("Live workers", WorkerListSchema, {
        workers: [
          {
            id: "host-1:4242:ab12",
            host: "host-1",
            pid: 4242,
            queues: ["default"],
            concurrency: 16,
            running: 3,
            runningByQueue: { default: 3 },
            listening: true,
            startedAt: T,
            lastSeenAt: "2025-01-01T12:05:00.000Z",
            leaseExpiresAt: "2025-01-01T12:05:30.000Z",
          },
        ],
      }),
    },
  });

  const queueMinutes = createRoute({
    method: "get",
    path: "/stats/minutes",
    operationId: "queueMinutes",
    tags: [DASHBOARD_TAG.name],
    summary: "Per queue and minute: jobs completed, failed, retried, and their wait and run time",
    description:
      "What the workers count as jobs end (the counts `GET /queues` sums for completed jobs): a few rows per queue and minute, read through their primary key, never the jobs.",
    request: { query: MinutesQuerySchema },
    responses: {
      200: jsonResponse("The minutes", MinutesSchema, {
        now: "2025-01-01T12:59:30.000Z",
        from: T,
        minutes: [
          {
            queue: "default",
            minute: "2025-01-01T12:58:00.000Z",
            completed: 1200,
            failed: 2,
            cancelled: 0,
            retried: 5,
            runMs: 48_000,
            waitMs: 3_600,
          },
        ],
      }),
      400: failure("A query parameter is invalid", ["VALIDATION_FAILED"], {
        message: "invalid query: minutes",
        details: [
          { path: "minutes", message: "Too big: expected number to be <=1440", code: "too_big" },
        ],
      }),
    },
  });

  return { overview, jobs, job, queue, schedules, asset, listWorkers, queueMinutes };
}
