import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import type { ApiDeps } from "../api/context.ts";
import { bodyRefusals, failure, jsonResponse } from "../api/responses.ts";
import { mountRoute } from "../api/route.ts";
import type { ApiEnv } from "../api/types.ts";
import { PgwakeError } from "../errors.ts";
import type { NewJob } from "../jobs/enqueue.ts";
import { SchedulePatchSchema, type ScheduleSpec, ScheduleSpecSchema } from "./definition.ts";
import {
  ScheduleDetailsJsonSchema,
  ScheduleJsonSchema,
  SchedulePageJsonSchema,
  scheduleDetailsJson,
  scheduleJson,
  schedulePageJson,
  TriggerResultJsonSchema,
  triggerResultJson,
} from "./json.ts";
import {
  createSchedule,
  deleteSchedule,
  getSchedule,
  listSchedules,
  pauseSchedule,
  resumeSchedule,
  triggerSchedule,
  updateSchedule,
} from "./store.ts";
import { SCHEDULE_DEFAULTS, SCHEDULE_SOURCES } from "./types.ts";

/** The tag of the schedule operations (the document must declare it). */
export const SCHEDULES_TAG = {
  name: "schedules",
  description:
    "Recurring jobs: cron expressions in a time zone, with catch-up and overlap policies; exactly one job per tick across all workers.",
};

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
const NAME_RULE = "a schedule name: 1-128 of A-Z a-z 0-9 _ . : -";
const EXAMPLE_NAME = "nightly-report";
const EXAMPLE_TIME = "2025-01-01T01:30:00.000Z";

const NameParamsSchema = z.object({
  name: z
    .string()
    .regex(NAME, NAME_RULE)
    .meta({
      description: "A schedule name: 1-128 of A-Z a-z 0-9 _ . : -",
      param: { name: "name", in: "path", example: EXAMPLE_NAME },
    }),
});

const ListQuerySchema = z.strictObject({
  after: z
    .string()
    .max(128)
    .optional()
    .meta({ description: "The previous page's nextCursor.", example: "a" }),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(500)
    .optional()
    .meta({ description: "Schedules per page (default 50).", example: 50 }),
  task: z.string().max(128).optional().meta({ description: "Only schedules of this task." }),
  paused: z
    .enum(["true", "false"])
    .optional()
    .meta({ description: "Only paused (or active) ones." }),
  definedBy: z
    .enum(SCHEDULE_SOURCES)
    .optional()
    .meta({ description: "Only those defined this way." }),
});

const DetailsQuerySchema = z.strictObject({
  runs: z.coerce
    .number()
    .int()
    .min(0)
    .max(100)
    .optional()
    .meta({ description: "Newest runs shown (default 10).", example: 10 }),
  upcoming: z.coerce
    .number()
    .int()
    .min(0)
    .max(100)
    .optional()
    .meta({ description: "Next times shown (default 5).", example: 5 }),
});

const DeleteQuerySchema = z.strictObject({
  force: z.enum(["true", "false"]).optional().meta({
    description: "Also delete a code-defined schedule (the next worker start recreates it).",
  }),
});

const TriggerBodySchema = z
  .strictObject({
    idempotencyKey: z.string().min(1).max(128).optional().meta({
      description: "A repeated trigger with the same key returns the first trigger's job.",
    }),
  })
  .meta({ id: "ScheduleTriggerRequest", example: { idempotencyKey: "deploy-2025-01-01" } });

/** 400 of the operations that take a schedule definition. */
const invalidDefinition = failure(
  "The name or a field is invalid (VALIDATION_FAILED, one issue per field: a bad expression, an unknown time zone…), the body is not JSON (INVALID_JSON), or the schedule cannot be stored (INVALID_SCHEDULE, e.g. text holding U+0000); nothing was changed",
  ["VALIDATION_FAILED", "INVALID_JSON", "INVALID_SCHEDULE"],
  {
    message: "invalid schedule: cron",
    details: [
      { path: "cron", message: '"61 * * * *": Invalid value for minute: 61', code: "custom" },
    ],
  },
);
/** 400 of the operations that take only a name (and query parameters). */
const invalidName = (what = "The schedule name or a query parameter is invalid") =>
  failure(what, ["VALIDATION_FAILED"], {
    message: "invalid path: name",
    details: [{ path: "name", message: NAME_RULE, code: "invalid_format" }],
  });
const invalidTrigger = failure(
  "The schedule name or the body is invalid (VALIDATION_FAILED), or the body is not JSON (INVALID_JSON)",
  ["VALIDATION_FAILED", "INVALID_JSON"],
  {
    message: "invalid trigger: idempotencyKey",
    details: [
      {
        path: "idempotencyKey",
        message: "Too small: expected string to have >=1 characters",
        code: "too_small",
      },
    ],
  },
);
const notFound = failure("No schedule has this name", ["SCHEDULE_NOT_FOUND"], {
  message: `no schedule named "${EXAMPLE_NAME}"`,
  details: { name: EXAMPLE_NAME },
});
const conflict = (message: string, reason: string) =>
  failure(
    "Refused by the schedule's state (details.reason): the name is taken (exists), it is defined in code (defined_in_code), or it changed meanwhile (changed)",
    ["SCHEDULE_CONFLICT"],
    { message, details: { reason } },
  );
const unprocessable = failure(
  "The task is unknown here (UNKNOWN_TASK) or the payload does not fit its schema (INVALID_PAYLOAD)",
  ["UNKNOWN_TASK", "INVALID_PAYLOAD"],
  { message: 'unknown task "send-reprot"' },
);

/** The schedule operations as route definitions: the document is generated from them. */
export function scheduleRouteDefinitions(deps: Pick<ApiDeps, "exampleTask" | "bodyLimitBytes">) {
  const { exampleTask, bodyLimitBytes } = deps;
  const exampleSpec = {
    name: EXAMPLE_NAME,
    cron: "30 2 * * *",
    timeZone: "Europe/Berlin",
    task: exampleTask.name,
    payload: exampleTask.payload,
    catchUp: "once",
    overlap: "skip",
  } satisfies ScheduleSpec;
  const exampleSchedule: z.input<typeof ScheduleJsonSchema> = {
    name: EXAMPLE_NAME,
    cron: exampleSpec.cron,
    timeZone: exampleSpec.timeZone,
    task: exampleTask.name,
    payload: exampleTask.payload,
    queue: null,
    priority: null,
    maxAttempts: null,
    timeoutMs: null,
    catchUp: "once",
    catchUpLimit: SCHEDULE_DEFAULTS.catchUpLimit,
    overlap: "skip",
    paused: false,
    nextRunAt: EXAMPLE_TIME,
    lastTickAt: null,
    lastJobId: null,
    invalidReason: null,
    definedBy: "http",
    owner: null,
    definitionHash: "9f2c4e1a7b3d5f60a8c2e4b6d8f0a1c3",
    revision: 1,
    ticksFired: 0,
    ticksSkipped: 0,
    ticksLate: 0,
    createdAt: "2024-12-31T18:00:00.000Z",
    updatedAt: "2024-12-31T18:00:00.000Z",
  };
  const exampleRun = {
    id: 1,
    tickAt: EXAMPLE_TIME,
    trigger: "cron" as const,
    outcome: "fired" as const,
    skipReason: null,
    ticks: 1,
    lastTickAt: EXAMPLE_TIME,
    jobId: 1042,
    lateMs: -1998,
    decidedAt: "2025-01-01T01:29:58.002Z",
  };
  const body = <S extends z.ZodType>(schema: S, example: z.input<S>, required = true) => ({
    content: { "application/json": { schema, example } },
    required,
  });
  const scheduleAnswer = (description: string, overrides: Partial<typeof exampleSchedule> = {}) =>
    jsonResponse(description, ScheduleJsonSchema, { ...exampleSchedule, ...overrides });
  const refusals = bodyRefusals(bodyLimitBytes);

  return {
    createSchedule: createRoute({
      method: "post",
      path: "/schedules",
      operationId: "createSchedule",
      tags: [SCHEDULES_TAG.name],
      summary: "Create a schedule",
      description:
        "Validates everything first: an invalid cron expression or an unknown time zone is refused with 400 naming the field, and nothing is created. The first tick is the first after now.",
      request: { body: body(ScheduleSpecSchema, exampleSpec) },
      responses: {
        201: scheduleAnswer("The schedule, with its first tick"),
        400: invalidDefinition,
        409: conflict(`a schedule named "${EXAMPLE_NAME}" exists`, "exists"),
        ...refusals,
        422: unprocessable,
      },
    }),
    listSchedules: createRoute({
      method: "get",
      path: "/schedules",
      operationId: "listSchedules",
      tags: [SCHEDULES_TAG.name],
      summary: "List schedules in name order",
      request: { query: ListQuerySchema },
      responses: {
        200: jsonResponse("A page of schedules", SchedulePageJsonSchema, {
          schedules: [exampleSchedule],
          nextCursor: null,
        }),
        400: failure("A query parameter is invalid", ["VALIDATION_FAILED"], {
          message: "invalid query: limit",
          details: [
            { path: "limit", message: "Too big: expected number to be <=500", code: "too_big" },
          ],
        }),
      },
    }),
    pauseSchedule: createRoute({
      method: "post",
      path: "/schedules/{name}/pause",
      operationId: "pauseSchedule",
      tags: [SCHEDULES_TAG.name],
      summary: "Pause a schedule",
      description: "No tick fires until it is resumed. Jobs already made stay.",
      request: { params: NameParamsSchema },
      responses: {
        200: scheduleAnswer("The paused schedule", { paused: true }),
        400: invalidName("The schedule name is invalid"),
        404: notFound,
      },
    }),
    resumeSchedule: createRoute({
      method: "post",
      path: "/schedules/{name}/resume",
      operationId: "resumeSchedule",
      tags: [SCHEDULES_TAG.name],
      summary: "Resume a schedule",
      description:
        "Ticks that came while it was paused follow its catch-up policy on the next pass.",
      request: { params: NameParamsSchema },
      responses: {
        200: scheduleAnswer("The resumed schedule"),
        400: invalidName("The schedule name is invalid"),
        404: notFound,
      },
    }),
    triggerSchedule: createRoute({
      method: "post",
      path: "/schedules/{name}/trigger",
      operationId: "triggerSchedule",
      tags: [SCHEDULES_TAG.name],
      summary: "Make the schedule's job now",
      description:
        "Also when paused, whatever its overlap policy; recorded as a manual run. The body is optional.",
      request: {
        params: NameParamsSchema,
        body: body(TriggerBodySchema, { idempotencyKey: "deploy-2025-01-01" }, false),
      },
      responses: {
        201: jsonResponse(
          "The job made (or the first one made with this key)",
          TriggerResultJsonSchema,
          {
            job: {
              id: 1043,
              queue: "default",
              task: exampleTask.name,
              status: "pending",
              runAt: "2025-01-01T09:12:00.000Z",
              createdAt: "2025-01-01T09:12:00.000Z",
            },
            run: {
              ...exampleRun,
              id: 2,
              tickAt: "2025-01-01T09:12:00.000Z",
              lastTickAt: "2025-01-01T09:12:00.000Z",
              trigger: "manual",
              jobId: 1043,
              lateMs: 0,
              decidedAt: "2025-01-01T09:12:00.000Z",
            },
            duplicate: false,
          },
        ),
        400: invalidTrigger,
        404: notFound,
        ...refusals,
      },
    }),
    getSchedule: createRoute({
      method: "get",
      path: "/schedules/{name}",
      operationId: "getSchedule",
      tags: [SCHEDULES_TAG.name],
      summary: "A schedule, its next times, its newest runs and their jobs",
      request: { params: NameParamsSchema, query: DetailsQuerySchema },
      responses: {
        200: jsonResponse("The schedule", ScheduleDetailsJsonSchema, {
          schedule: {
            ...exampleSchedule,
            lastTickAt: EXAMPLE_TIME,
            lastJobId: 1042,
            ticksFired: 1,
          },
          upcoming: ["2025-01-02T01:30:00.000Z", "2025-01-03T01:30:00.000Z"],
          runs: [
            {
              ...exampleRun,
              job: {
                id: 1042,
                status: "completed",
                attempts: 1,
                maxAttempts: 10,
                createdAt: "2025-01-01T01:29:58.002Z",
                startedAt: "2025-01-01T01:30:00.004Z",
                finishedAt: "2025-01-01T01:30:01.250Z",
                lastError: null,
              },
            },
          ],
        }),
        400: invalidName(),
        404: notFound,
      },
    }),
    updateSchedule: createRoute({
      method: "patch",
      path: "/schedules/{name}",
      operationId: "updateSchedule",
      tags: [SCHEDULES_TAG.name],
      summary: "Change a schedule",
      description:
        "Fields left out keep their value; null resets a job option to the default. A new expression or zone starts at its next tick after now; other changes keep the schedule's place. A code-defined schedule only takes `paused` here.",
      request: {
        params: NameParamsSchema,
        body: body(SchedulePatchSchema, { cron: "0 3 * * *" }),
      },
      responses: {
        200: scheduleAnswer("The schedule as changed", {
          cron: "0 3 * * *",
          nextRunAt: "2025-01-01T02:00:00.000Z",
          revision: 2,
        }),
        400: invalidDefinition,
        404: notFound,
        409: conflict(
          `schedule "${EXAMPLE_NAME}" is defined in code (owner "default"): change it there; only pause and resume apply here`,
          "defined_in_code",
        ),
        ...refusals,
        422: unprocessable,
      },
    }),
    deleteSchedule: createRoute({
      method: "delete",
      path: "/schedules/{name}",
      operationId: "deleteSchedule",
      tags: [SCHEDULES_TAG.name],
      summary: "Delete a schedule and its run records",
      description: "The jobs it made stay. A code-defined schedule needs `force=true`.",
      request: { params: NameParamsSchema, query: DeleteQuerySchema },
      responses: {
        200: scheduleAnswer("The deleted schedule", { cron: "0 3 * * *", revision: 2 }),
        400: invalidName(),
        404: notFound,
        409: conflict(
          `schedule "${EXAMPLE_NAME}" is defined in code: remove it there (a worker start would recreate it), or pause it`,
          "defined_in_code",
        ),
      },
    }),
  };
}

/**
 * The schedule routes, mounted the API's way (`mountRoute`: documented from the same definitions
 * that validate requests, keys checked, 503 until the schema is current). Mount with
 * `app.route("/", scheduleRoutes(deps))` and declare SCHEDULES_TAG in the document. Invalid input
 * is 400 and changes nothing; an unknown schedule is 404 SCHEDULE_NOT_FOUND; conflicts are 409
 * SCHEDULE_CONFLICT. The store's refusals are PgwakeErrors, rendered by the API's one mapping
 * (src/api/errors.ts `toApiError`).
 */
export function scheduleRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const routes = scheduleRouteDefinitions(deps);
  const db = deps.pgwake.pool;
  const { sql } = deps;
  // Schedules are checked as the jobs they make would be: the same task knowledge and policy.
  const writeOptions = {
    prepareJob: (job: NewJob) => deps.pgwake.prepare(job),
    requireKnownTask: !deps.acceptUnknownTasks,
    knowsTask: (name: string) => deps.pgwake.knowsTask(name),
    definedBy: "http" as const,
  };
  const options = { access: "key", database: true, bodyName: "schedule" } as const;

  mountRoute(
    app,
    deps,
    routes.createSchedule,
    async (_c, { body }) => {
      const schedule = await createSchedule(db, sql, body, writeOptions);
      return { status: 201, body: scheduleJson(schedule) };
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.listSchedules,
    async (_c, { query }) => {
      const page = await listSchedules(db, sql, {
        ...(query.after !== undefined ? { after: query.after } : {}),
        ...(query.limit !== undefined ? { limit: query.limit } : {}),
        ...(query.task !== undefined ? { task: query.task } : {}),
        ...(query.paused !== undefined ? { paused: query.paused === "true" } : {}),
        ...(query.definedBy !== undefined ? { definedBy: query.definedBy } : {}),
      });
      return { status: 200, body: schedulePageJson(page) };
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.pauseSchedule,
    async (_c, { params }) => ({
      status: 200,
      body: scheduleJson(found(params.name, await pauseSchedule(db, sql, params.name))),
    }),
    options,
  );

  mountRoute(
    app,
    deps,
    routes.resumeSchedule,
    async (_c, { params }) => ({
      status: 200,
      body: scheduleJson(found(params.name, await resumeSchedule(db, sql, params.name))),
    }),
    options,
  );

  mountRoute(
    app,
    deps,
    routes.triggerSchedule,
    async (_c, { params, body }) => {
      const key = body?.idempotencyKey;
      const triggered = await triggerSchedule(
        db,
        sql,
        params.name,
        key !== undefined ? { idempotencyKey: key } : {},
      );
      return { status: 201, body: triggerResultJson(found(params.name, triggered)) };
    },
    { ...options, bodyName: "trigger" },
  );

  mountRoute(
    app,
    deps,
    routes.getSchedule,
    async (_c, { params, query }) => {
      const details = await getSchedule(db, sql, params.name, {
        ...(query.runs !== undefined ? { runs: query.runs } : {}),
        ...(query.upcoming !== undefined ? { upcoming: query.upcoming } : {}),
      });
      return { status: 200, body: scheduleDetailsJson(found(params.name, details)) };
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.updateSchedule,
    async (_c, { params, body }) => {
      const schedule = await updateSchedule(db, sql, params.name, body, writeOptions);
      return { status: 200, body: scheduleJson(found(params.name, schedule)) };
    },
    { ...options, bodyName: "schedule update" },
  );

  mountRoute(
    app,
    deps,
    routes.deleteSchedule,
    async (_c, { params, query }) => {
      const force = query.force === "true";
      const schedule = await deleteSchedule(db, sql, params.name, { force });
      return { status: 200, body: scheduleJson(found(params.name, schedule)) };
    },
    options,
  );

  return app;
}

function found<T>(name: string, value: T | null): T {
  if (value === null) {
    throw new PgwakeError("SCHEDULE_NOT_FOUND", `no schedule named ${JSON.stringify(name)}`, {
      details: { name },
    });
  }
  return value;
}
