import type { OpenAPIHono } from "@hono/zod-openapi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { ApiEnv } from "../../src/api/types.ts";
import { SchemaSql } from "../../src/db/sql.ts";
import { defineTask } from "../../src/index.ts";
import {
  ScheduleDetailsJsonSchema,
  ScheduleJsonSchema,
  SchedulePageJsonSchema,
  TriggerResultJsonSchema,
} from "../../src/schedules/json.ts";
import { reconcileSchedules } from "../../src/schedules/reconcile.ts";
import { runDueSchedules } from "../../src/schedules/service.ts";
import { scheduleApiDeps, scheduleApp } from "../fixtures/schedule-api.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const report = defineTask({
  name: "report",
  schema: z.object({ kind: z.enum(["daily", "weekly"]) }),
  handler: () => {},
  queue: "reports",
  example: { kind: "daily" },
});

const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});

const LIMIT = 4096;

describe("schedule routes over HTTP", () => {
  let db: TestDb;
  let app: OpenAPIHono<ApiEnv>;
  let strictApp: OpenAPIHono<ApiEnv>;
  /** Statuses answered, by operation: every documented one must come up. */
  const seen = new Map<string, Set<number>>();

  beforeAll(async () => {
    db = await createTestDb("schedules-api", { tasks: [report] });
    app = scheduleApp(scheduleApiDeps(db.pgwake, { bodyLimitBytes: LIMIT }));
    strictApp = scheduleApp(
      scheduleApiDeps(db.pgwake, { acceptUnknownTasks: false, apiKeys: ["secret-key"] }),
    );
  });
  afterAll(async () => {
    await db?.close();
  });

  async function call(
    operation: string,
    method: string,
    path: string,
    body?: unknown,
    options: { app?: OpenAPIHono<ApiEnv>; headers?: Record<string, string> } = {},
  ) {
    const headers: Record<string, string> = { ...options.headers };
    if (body !== undefined && !("content-type" in headers))
      headers["content-type"] = "application/json";
    const res = await (options.app ?? app).request(path, {
      method,
      headers,
      ...(body !== undefined
        ? { body: typeof body === "string" ? body : JSON.stringify(body) }
        : {}),
    });
    if (!seen.has(operation)) seen.set(operation, new Set());
    seen.get(operation)!.add(res.status);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function expectError(
    answer: { status: number; body: Record<string, unknown> },
    status: number,
    code: string,
  ) {
    expect(answer.status, JSON.stringify(answer.body)).toBe(status);
    const parsed = ErrorBody.parse(answer.body);
    expect(parsed.error.code).toBe(code);
    return parsed.error;
  }

  const count = async () =>
    (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM {{schema}}.schedules"))[0]!.n;

  it("an invalid cron expression or an unknown time zone is a 400 naming the field, and creates nothing", async () => {
    const badCron = await expectError(
      await call("createSchedule", "POST", "/schedules", {
        name: "r",
        cron: "61 * * * *",
        task: "report",
        payload: { kind: "daily" },
      }),
      400,
      "VALIDATION_FAILED",
    );
    expect(badCron.message).toMatch(/cron/);
    expect(badCron.details).toEqual([
      expect.objectContaining({ path: "cron", message: expect.stringMatching(/minute: 61/) }),
    ]);

    const badZone = await expectError(
      await call("createSchedule", "POST", "/schedules", {
        name: "r",
        cron: "0 3 * * *",
        timeZone: "Mars/Olympus_Mons",
        task: "report",
        payload: { kind: "daily" },
      }),
      400,
      "VALIDATION_FAILED",
    );
    expect(badZone.details).toEqual([
      expect.objectContaining({
        path: "timeZone",
        message: expect.stringMatching(/unknown time zone "Mars\/Olympus_Mons"/),
      }),
    ]);

    // Every problem at once: a 4-field expression, an offset for a zone, a policy, a stray field.
    const many = await expectError(
      await call("createSchedule", "POST", "/schedules", {
        name: "r",
        cron: "* * * *",
        timeZone: "+02:00",
        task: "report",
        catchUp: "sometimes",
        every: "day",
      }),
      400,
      "VALIDATION_FAILED",
    );
    const paths = (many.details as Array<{ path: string; message: string }>)
      .map((d) => d.path)
      .sort();
    expect(paths).toEqual(["catchUp", "cron", "every", "timeZone"]);
    expect(JSON.stringify(many.details)).toMatch(/has 4 fields; use 5/);

    await expectError(
      await call("createSchedule", "POST", "/schedules", "{not json"),
      400,
      "INVALID_JSON",
    );
    await expectError(
      await call("createSchedule", "POST", "/schedules", "name=r", {
        headers: { "content-type": "text/plain" },
      }),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
    await expectError(
      await call("createSchedule", "POST", "/schedules", {
        name: "r",
        cron: "@daily",
        task: "report",
        payload: { kind: "daily", pad: "x".repeat(LIMIT) },
      }),
      413,
      "PAYLOAD_TOO_LARGE",
    );
    expect(await count()).toBe(0);
  });

  it("a known task's payload is checked; an unknown task is refused where unknown tasks are", async () => {
    await expectError(
      await call("createSchedule", "POST", "/schedules", {
        name: "r",
        cron: "@daily",
        task: "report",
        payload: { kind: "hourly" },
      }),
      422,
      "INVALID_PAYLOAD",
    );
    await expectError(
      await call(
        "createSchedule",
        "POST",
        "/schedules",
        { name: "r", cron: "@daily", task: "repotr" },
        { app: strictApp, headers: { authorization: "Bearer secret-key" } },
      ),
      422,
      "UNKNOWN_TASK",
    );
    expect(await count()).toBe(0);
  });

  it("create, read, list, update, pause, resume, trigger and delete", async () => {
    const created = await call("createSchedule", "POST", "/schedules", {
      name: "nightly",
      cron: "30 2 * * *",
      timeZone: "europe/berlin",
      task: "report",
      payload: { kind: "daily" },
      overlap: "skip",
    });
    expect(created.status).toBe(201);
    const schedule = ScheduleJsonSchema.parse(created.body);
    expect(schedule).toMatchObject({
      name: "nightly",
      timeZone: "Europe/Berlin",
      queue: "reports", // the task's default
      catchUp: "once",
      overlap: "skip",
      definedBy: "http",
      paused: false,
    });
    expect(new Date(schedule.nextRunAt!).getTime()).toBeGreaterThan(Date.now() - 60_000);

    const again = await expectError(
      await call("createSchedule", "POST", "/schedules", {
        name: "nightly",
        cron: "@daily",
        task: "report",
        payload: { kind: "daily" },
      }),
      409,
      "SCHEDULE_CONFLICT",
    );
    expect(again.details).toEqual({ reason: "exists" });

    await call("createSchedule", "POST", "/schedules", {
      name: "weekly",
      cron: "@weekly",
      task: "report",
      payload: { kind: "weekly" },
      paused: true,
    });
    const page = await call("listSchedules", "GET", "/schedules?limit=1");
    expect(page.status).toBe(200);
    expect(SchedulePageJsonSchema.parse(page.body)).toMatchObject({
      schedules: [{ name: "nightly" }],
      nextCursor: "nightly",
    });
    const rest = SchedulePageJsonSchema.parse(
      (await call("listSchedules", "GET", "/schedules?after=nightly")).body,
    );
    expect(rest.schedules.map((s) => s.name)).toEqual(["weekly"]);
    const paused = SchedulePageJsonSchema.parse(
      (await call("listSchedules", "GET", "/schedules?paused=true")).body,
    );
    expect(paused.schedules.map((s) => s.name)).toEqual(["weekly"]);
    await expectError(
      await call("listSchedules", "GET", "/schedules?limit=0"),
      400,
      "VALIDATION_FAILED",
    );
    await expectError(
      await call("listSchedules", "GET", "/schedules?sort=name"),
      400,
      "VALIDATION_FAILED",
    );

    // Read: next times in the zone (02:30 Berlin is 00:30 or 01:30 UTC), no runs yet.
    const details = ScheduleDetailsJsonSchema.parse(
      (await call("getSchedule", "GET", "/schedules/nightly")).body,
    );
    expect(details.upcoming).toHaveLength(5);
    for (const time of details.upcoming) expect(time).toMatch(/T0[01]:30:00\.000Z$/);
    expect(details.runs).toEqual([]);
    await expectError(
      await call("getSchedule", "GET", "/schedules/nope"),
      404,
      "SCHEDULE_NOT_FOUND",
    );
    await expectError(
      await call("getSchedule", "GET", "/schedules/bad%20name"),
      400,
      "VALIDATION_FAILED",
    );

    // Update: a bad expression changes nothing; a good one moves the next tick.
    await expectError(
      await call("updateSchedule", "PATCH", "/schedules/nightly", { cron: "0 25 * * *" }),
      400,
      "VALIDATION_FAILED",
    );
    const unchanged = ScheduleDetailsJsonSchema.parse(
      (await call("getSchedule", "GET", "/schedules/nightly")).body,
    );
    expect(unchanged.schedule).toMatchObject({ cron: "30 2 * * *", revision: 1 });
    const updated = await call("updateSchedule", "PATCH", "/schedules/nightly", {
      cron: "0 3 * * *",
      queue: null,
    });
    expect(updated.status).toBe(200);
    expect(ScheduleJsonSchema.parse(updated.body)).toMatchObject({
      cron: "0 3 * * *",
      queue: null,
      revision: 2,
    });
    await expectError(
      await call("updateSchedule", "PATCH", "/schedules/nope", { cron: "@daily" }),
      404,
      "SCHEDULE_NOT_FOUND",
    );
    await expectError(
      await call("updateSchedule", "PATCH", "/schedules/nightly", { payload: { kind: "yearly" } }),
      422,
      "INVALID_PAYLOAD",
    );
    await expectError(
      await call("updateSchedule", "PATCH", "/schedules/nightly", "{}", {
        headers: { "content-type": "text/plain" },
      }),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
    await expectError(
      await call("updateSchedule", "PATCH", "/schedules/nightly", {
        payload: { kind: "daily", pad: "x".repeat(LIMIT) },
      }),
      413,
      "PAYLOAD_TOO_LARGE",
    );

    // Pause and resume.
    const pausedOne = await call("pauseSchedule", "POST", "/schedules/nightly/pause");
    expect(ScheduleJsonSchema.parse(pausedOne.body).paused).toBe(true);
    const resumed = await call("resumeSchedule", "POST", "/schedules/nightly/resume");
    expect(ScheduleJsonSchema.parse(resumed.body).paused).toBe(false);
    await expectError(
      await call("pauseSchedule", "POST", "/schedules/nope/pause"),
      404,
      "SCHEDULE_NOT_FOUND",
    );
    await expectError(
      await call("resumeSchedule", "POST", "/schedules/nope/resume"),
      404,
      "SCHEDULE_NOT_FOUND",
    );
    await expectError(
      await call("pauseSchedule", "POST", "/schedules/x%20y/pause"),
      400,
      "VALIDATION_FAILED",
    );
    await expectError(
      await call("resumeSchedule", "POST", "/schedules/x%20y/resume"),
      400,
      "VALIDATION_FAILED",
    );

    // Trigger: a job now, linked from the schedule's runs with its outcome.
    const triggered = await call("triggerSchedule", "POST", "/schedules/nightly/trigger");
    expect(triggered.status).toBe(201);
    const result = TriggerResultJsonSchema.parse(triggered.body);
    expect(result).toMatchObject({
      duplicate: false,
      job: { task: "report", status: "pending" },
      run: { trigger: "manual" },
    });
    const keyed = TriggerResultJsonSchema.parse(
      (
        await call("triggerSchedule", "POST", "/schedules/nightly/trigger", {
          idempotencyKey: "k-1",
        })
      ).body,
    );
    const repeated = TriggerResultJsonSchema.parse(
      (
        await call("triggerSchedule", "POST", "/schedules/nightly/trigger", {
          idempotencyKey: "k-1",
        })
      ).body,
    );
    expect(repeated).toMatchObject({ duplicate: true, run: null, job: { id: keyed.job.id } });
    await expectError(
      await call("triggerSchedule", "POST", "/schedules/nope/trigger"),
      404,
      "SCHEDULE_NOT_FOUND",
    );
    await expectError(
      await call("triggerSchedule", "POST", "/schedules/x%20y/trigger"),
      400,
      "VALIDATION_FAILED",
    );
    await expectError(
      await call("triggerSchedule", "POST", "/schedules/nightly/trigger", { key: "k" }),
      400,
      "VALIDATION_FAILED",
    );
    await expectError(
      await call("triggerSchedule", "POST", "/schedules/nightly/trigger", "k", {
        headers: { "content-type": "text/plain" },
      }),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
    await expectError(
      await call("triggerSchedule", "POST", "/schedules/nightly/trigger", {
        idempotencyKey: "x".repeat(LIMIT),
      }),
      413,
      "PAYLOAD_TOO_LARGE",
    );
    const withRuns = ScheduleDetailsJsonSchema.parse(
      (await call("getSchedule", "GET", "/schedules/nightly?runs=1")).body,
    );
    expect(withRuns.runs).toHaveLength(1);
    expect(withRuns.runs[0]).toMatchObject({
      trigger: "manual",
      jobId: keyed.job.id,
      job: { id: keyed.job.id, status: "pending" },
    });

    // Delete: the row and its runs go, its jobs stay.
    const deleted = await call("deleteSchedule", "DELETE", "/schedules/nightly");
    expect(ScheduleJsonSchema.parse(deleted.body).name).toBe("nightly");
    await expectError(
      await call("deleteSchedule", "DELETE", "/schedules/nightly"),
      404,
      "SCHEDULE_NOT_FOUND",
    );
    await expectError(
      await call("deleteSchedule", "DELETE", "/schedules/x%20y"),
      400,
      "VALIDATION_FAILED",
    );
    expect(await db.pgwake.getJob(keyed.job.id)).not.toBeNull();
    await call("deleteSchedule", "DELETE", "/schedules/weekly");
  });

  it("a schedule defined in code can be paused here but not changed or deleted without force", async () => {
    await reconcileSchedules(db.pool, new SchemaSql(db.schema), [
      { name: "from-code", cron: "@hourly", task: "report", payload: { kind: "daily" } },
    ]);
    const refused = await expectError(
      await call("updateSchedule", "PATCH", "/schedules/from-code", { cron: "@daily" }),
      409,
      "SCHEDULE_CONFLICT",
    );
    expect(refused.details).toEqual({ reason: "defined_in_code" });
    const paused = await call("updateSchedule", "PATCH", "/schedules/from-code", { paused: true });
    expect(ScheduleJsonSchema.parse(paused.body)).toMatchObject({ paused: true, cron: "@hourly" });
    await expectError(
      await call("deleteSchedule", "DELETE", "/schedules/from-code"),
      409,
      "SCHEDULE_CONFLICT",
    );
    const forced = await call("deleteSchedule", "DELETE", "/schedules/from-code?force=true");
    expect(forced.status).toBe(200);
  });

  it("runs of the service show up with their jobs; keys are checked when the API has keys", async () => {
    await call("createSchedule", "POST", "/schedules", {
      name: "often",
      cron: "* * * * * *",
      task: "report",
      payload: { kind: "daily" },
    });
    const sql = new SchemaSql(db.schema);
    await waitFor(
      async () => {
        await runDueSchedules(db.pool, sql);
        const details = ScheduleDetailsJsonSchema.parse(
          (await call("getSchedule", "GET", "/schedules/often")).body,
        );
        return details.runs.length >= 2;
      },
      { timeoutMs: 10_000, intervalMs: 100, message: "two runs" },
    );
    const details = ScheduleDetailsJsonSchema.parse(
      (await call("getSchedule", "GET", "/schedules/often")).body,
    );
    for (const run of details.runs) {
      // Made ahead of its tick, a job waits as scheduled, then pending.
      expect(run).toMatchObject({
        trigger: "cron",
        outcome: "fired",
        job: { id: run.jobId, status: expect.stringMatching(/^(scheduled|pending)$/) },
      });
    }
    await call("deleteSchedule", "DELETE", "/schedules/often");

    const missing = await strictApp.request("/schedules");
    expect(missing.status).toBe(401);
    const wrong = await strictApp.request("/schedules", {
      headers: { authorization: "Bearer nope" },
    });
    expect(wrong.status).toBe(403);
    const ok = await strictApp.request("/schedules", {
      headers: { authorization: "Bearer secret-key" },
    });
    expect(ok.status).toBe(200);
  });

  it("lands in the OpenAPI document, and every documented status of its operations came up here", () => {
    const doc = app.getOpenAPI31Document({
      openapi: "3.1.0",
      info: { title: "t", version: "1" },
    }) as unknown as {
      paths: Record<
        string,
        Record<string, { operationId: string; responses: Record<string, unknown> }>
      >;
    };
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, op]) => ({ path, method, op })),
    );
    expect(operations.map((o) => o.op.operationId).sort()).toEqual([
      "createSchedule",
      "deleteSchedule",
      "getSchedule",
      "listSchedules",
      "pauseSchedule",
      "resumeSchedule",
      "triggerSchedule",
      "updateSchedule",
    ]);
    // Shared answers (keys, 405, 503, default) are the API's and tested with it.
    const shared = new Set(["401", "403", "405", "503", "default"]);
    for (const { op } of operations) {
      const documented = Object.keys(op.responses)
        .filter((s) => !shared.has(s))
        .sort();
      const answered = [...(seen.get(op.operationId) ?? [])].map(String).sort();
      expect(answered, op.operationId).toEqual(documented);
    }
  });
});
