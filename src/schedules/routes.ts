import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import type { Context, Next } from "hono";
import { z } from "zod";
import { ApiError, toApiError } from "../api/errors.ts";
import { readJson } from "../api/middleware/body.ts";
import type { ApiEnv } from "../api/types.ts";
import type { SchemaSql } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { PgwakeError } from "../errors.ts";
import type { TaskRegistry } from "../tasks.ts";
import { SchedulePatchSchema, ScheduleSpecSchema } from "./definition.ts";
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
  ScheduleConflictError,
  triggerSchedule,
  updateSchedule,
} from "./store.ts";
import { SCHEDULE_SOURCES } from "./types.ts";

/** What the schedule routes need; the app passes its pool, schema and task registry. */
export interface ScheduleRouteDeps {
  db: Queryable;
  sql: SchemaSql;
  /** Known tasks: payloads are checked and task defaults applied. */
  tasks?: TaskRegistry;
  /** Accept schedules of tasks `tasks` does not know (default true). */
  acceptUnknownTasks?: boolean;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimitBytes?: number;
}

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
const TAG = "Schedules";

const NameParamsSchema = z.object({
  name: z
    .string()
    .regex(NAME, "a schedule name: 1-128 of A-Z a-z 0-9 _ . : -")
    .meta({ param: { name: "name", in: "path" }, example: "nightly-report" }),
});

const ListQuerySchema = z.strictObject({
  after: z.string().max(128).optional().meta({ description: "The previous page's nextCursor." }),
  limit: z.coerce.number().int().min(1).max(500).optional().meta({ description: "Default 50." }),
  task: z.string().max(128).optional(),
  paused: z.enum(["true", "false"]).optional(),
  definedBy: z.enum(SCHEDULE_SOURCES).optional(),
});

const DetailsQuerySchema = z.strictObject({
  runs: z.coerce
    .number()
    .int()
    .min(0)
    .max(100)
    .optional()
    .meta({ description: "Newest runs shown (default 10)." }),
  upcoming: z.coerce
    .number()
    .int()
    .min(0)
    .max(100)
    .optional()
    .meta({ description: "Next times shown (default 5)." }),
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
  .meta({ id: "ScheduleTriggerRequest" });

const ErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});

const json = <S extends z.ZodType>(schema: S, description: string) => ({
  description,
  content: { "application/json": { schema } },
});
const failure = (description: string) => json(ErrorSchema, description);

const bad = failure(
  "Invalid input (VALIDATION_FAILED, INVALID_JSON): an invalid cron expression, an unknown time zone…",
);
const missing = failure("No schedule has this name (NOT_FOUND).");
const conflict = failure(
  "CONFLICT: the name is taken, the schedule is defined in code, or it changed meanwhile.",
);
const unprocessable = failure(
  "The task is unknown (UNKNOWN_TASK) or the payload does not fit its schema (INVALID_PAYLOAD).",
);

/** The schedule operations as OpenAPI route definitions (documented and validated from these). */
export const scheduleRouteDefinitions = {
  create: createRoute({
    method: "post",
    path: "/schedules",
    tags: [TAG],
    summary: "Create a schedule",
    description:
      "Nothing is created when any field is invalid; the first tick is the first after now.",
    request: {
      body: { content: { "application/json": { schema: ScheduleSpecSchema } }, required: true },
    },
    responses: {
      201: json(ScheduleJsonSchema, "Created."),
      400: bad,
      409: conflict,
      422: unprocessable,
    },
  }),
  list: createRoute({
    method: "get",
    path: "/schedules",
    tags: [TAG],
    summary: "List schedules in name order",
    request: { query: ListQuerySchema },
    responses: { 200: json(SchedulePageJsonSchema, "A page of schedules."), 400: bad },
  }),
  get: createRoute({
    method: "get",
    path: "/schedules/{name}",
    tags: [TAG],
    summary: "A schedule with its next times and its newest runs and their jobs",
    request: { params: NameParamsSchema, query: DetailsQuerySchema },
    responses: { 200: json(ScheduleDetailsJsonSchema, "The schedule."), 400: bad, 404: missing },
  }),
  update: createRoute({
    method: "patch",
    path: "/schedules/{name}",
    tags: [TAG],
    summary: "Change a schedule",
    description:
      "Fields left out keep their value; null resets a job option. A new expression or zone starts at its next tick after now. A code-defined schedule only takes `paused`.",
    request: {
      params: NameParamsSchema,
      body: { content: { "application/json": { schema: SchedulePatchSchema } }, required: true },
    },
    responses: {
      200: json(ScheduleJsonSchema, "The schedule as changed."),
      400: bad,
      404: missing,
      409: conflict,
      422: unprocessable,
    },
  }),
  delete: createRoute({
    method: "delete",
    path: "/schedules/{name}",
    tags: [TAG],
    summary: "Delete a schedule and its run records (its jobs stay)",
    request: { params: NameParamsSchema, query: DeleteQuerySchema },
    responses: {
      200: json(ScheduleJsonSchema, "The deleted schedule."),
      400: bad,
      404: missing,
      409: conflict,
    },
  }),
  pause: createRoute({
    method: "post",
    path: "/schedules/{name}/pause",
    tags: [TAG],
    summary: "Pause a schedule",
    request: { params: NameParamsSchema },
    responses: { 200: json(ScheduleJsonSchema, "The paused schedule."), 400: bad, 404: missing },
  }),
  resume: createRoute({
    method: "post",
    path: "/schedules/{name}/resume",
    tags: [TAG],
    summary: "Resume a schedule (ticks missed while paused follow its catch-up policy)",
    request: { params: NameParamsSchema },
    responses: { 200: json(ScheduleJsonSchema, "The resumed schedule."), 400: bad, 404: missing },
  }),
  trigger: createRoute({
    method: "post",
    path: "/schedules/{name}/trigger",
    tags: [TAG],
    summary: "Make the schedule's job now (also when paused, whatever its overlap policy)",
    request: {
      params: NameParamsSchema,
      body: { content: { "application/json": { schema: TriggerBodySchema } }, required: false },
    },
    responses: { 201: json(TriggerResultJsonSchema, "The job made."), 400: bad, 404: missing },
  }),
};

/**
 * The schedule routes as an OpenAPIHono sub-app: mount it with `app.route("/", …)` on an app whose
 * `onError` is the project's `errorHandler`, and its operations join the OpenAPI document.
 * Errors are `ApiError`s: 400 for invalid input (an invalid cron expression or unknown time zone
 * names the field and creates nothing), 404 for an unknown schedule, 409 for conflicts.
 */
export function scheduleRoutes(deps: ScheduleRouteDeps): OpenAPIHono<ApiEnv> {
  const { db, sql } = deps;
  const writeOptions = {
    ...(deps.tasks ? { tasks: deps.tasks } : {}),
    requireKnownTask: deps.acceptUnknownTasks === false,
    definedBy: "http" as const,
  };
  const app = new OpenAPIHono<ApiEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const where = result.target === "param" ? "path" : result.target;
        throw validationFailed(`invalid ${where}`, result.error.issues);
      }
    },
  });
  app.use("/schedules", readBody(deps));
  app.use("/schedules/*", readBody(deps));

  app.openapi(scheduleRouteDefinitions.create, async (c) => {
    const schedule = await answer(() => createSchedule(db, sql, c.req.valid("json"), writeOptions));
    return c.json(scheduleJson(schedule), 201);
  });

  app.openapi(scheduleRouteDefinitions.list, async (c) => {
    const query = c.req.valid("query");
    const page = await listSchedules(db, sql, {
      ...(query.after !== undefined ? { after: query.after } : {}),
      ...(query.limit !== undefined ? { limit: query.limit } : {}),
      ...(query.task !== undefined ? { task: query.task } : {}),
      ...(query.paused !== undefined ? { paused: query.paused === "true" } : {}),
      ...(query.definedBy !== undefined ? { definedBy: query.definedBy } : {}),
    });
    return c.json(schedulePageJson(page), 200);
  });

  app.openapi(scheduleRouteDefinitions.get, async (c) => {
    const { name } = c.req.valid("param");
    const query = c.req.valid("query");
    const details = found(
      name,
      await getSchedule(db, sql, name, {
        ...(query.runs !== undefined ? { runs: query.runs } : {}),
        ...(query.upcoming !== undefined ? { upcoming: query.upcoming } : {}),
      }),
    );
    return c.json(scheduleDetailsJson(details), 200);
  });

  app.openapi(scheduleRouteDefinitions.update, async (c) => {
    const { name } = c.req.valid("param");
    const patch = c.req.valid("json");
    const schedule = await answer(() => updateSchedule(db, sql, name, patch, writeOptions));
    return c.json(scheduleJson(found(name, schedule)), 200);
  });

  app.openapi(scheduleRouteDefinitions.delete, async (c) => {
    const { name } = c.req.valid("param");
    const force = c.req.valid("query").force === "true";
    const schedule = await answer(() => deleteSchedule(db, sql, name, { force }));
    return c.json(scheduleJson(found(name, schedule)), 200);
  });

  app.openapi(scheduleRouteDefinitions.pause, async (c) => {
    const { name } = c.req.valid("param");
    return c.json(scheduleJson(found(name, await pauseSchedule(db, sql, name))), 200);
  });

  app.openapi(scheduleRouteDefinitions.resume, async (c) => {
    const { name } = c.req.valid("param");
    return c.json(scheduleJson(found(name, await resumeSchedule(db, sql, name))), 200);
  });

  app.openapi(scheduleRouteDefinitions.trigger, async (c) => {
    const { name } = c.req.valid("param");
    const body = c.req.valid("json");
    const triggered = await answer(() =>
      triggerSchedule(
        db,
        sql,
        name,
        body.idempotencyKey ? { idempotencyKey: body.idempotencyKey } : {},
      ),
    );
    return c.json(triggerResultJson(found(name, triggered)), 201);
  });

  return app;
}

/**
 * Reads a JSON body the project's way (415 without a JSON content type, 413 over the limit,
 * INVALID_JSON when unreadable) and hands it to the route's validator, which then parses it
 * against the route's schema.
 */
function readBody(deps: ScheduleRouteDeps) {
  const limit = deps.bodyLimitBytes ?? 1024 * 1024;
  return async function readScheduleBody(c: Context<ApiEnv>, next: Next): Promise<void> {
    const method = c.req.method;
    const takesBody =
      (method === "POST" && (c.req.path === "/schedules" || c.req.path.endsWith("/trigger"))) ||
      method === "PATCH";
    if (takesBody) {
      const optional = c.req.path.endsWith("/trigger");
      const body = await readJson(c, limit, { optional });
      if (body !== undefined) c.req.bodyCache.json = Promise.resolve(body);
    }
    await next();
  };
}

function found<T>(name: string, value: T | null): T {
  if (value === null) {
    throw new ApiError(404, "NOT_FOUND", `no schedule named ${JSON.stringify(name)}`, {
      details: { name },
    });
  }
  return value;
}

/** Runs a store operation, turning its refusals into the API's errors. */
async function answer<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof ScheduleConflictError) {
      throw new ApiError(409, "CONFLICT", error.message, { details: { reason: error.reason } });
    }
    if (error instanceof PgwakeError && error.code === "INVALID_OPTIONS") {
      throw new ApiError(400, "VALIDATION_FAILED", error.message, {
        ...(error.details !== undefined ? { details: error.details } : {}),
      });
    }
    throw toApiError(error);
  }
}

function validationFailed(what: string, issues: readonly z.core.$ZodIssue[]): ApiError {
  const details = issues.slice(0, 50).map((issue) => {
    const keys = (issue as { keys?: string[] }).keys;
    const path = issue.path.map(String).join(".");
    return {
      path: path || (keys ? keys.join(",") : "(root)"),
      message: issue.message,
      code: issue.code,
    };
  });
  return new ApiError(
    400,
    "VALIDATION_FAILED",
    `${what}: ${details.map((d) => `${d.path}: ${d.message}`).join("; ")}`,
    {
      details,
    },
  );
}
