import client from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { SchemaSql } from "../../src/db/sql.ts";
import { defineTask, TaskRegistry } from "../../src/index.ts";
import { cancelJobs } from "../../src/jobs/control.ts";
import { compileSchedule, nextTick } from "../../src/schedules/cron.ts";
import { defineSchedule } from "../../src/schedules/definition.ts";
import { ScheduleLoop } from "../../src/schedules/loop.ts";
import { SCHEDULE_METRICS, ScheduleMetrics } from "../../src/schedules/metrics.ts";
import { reconcileSchedules, schedulesOfTasks } from "../../src/schedules/reconcile.ts";
import type { RunDueSchedulesResult } from "../../src/schedules/service.ts";
import { updateScheduleRow } from "../../src/schedules/sql/rows.ts";
import {
  createSchedule,
  deleteSchedule,
  getSchedule,
  listSchedules,
  pauseSchedule,
  ScheduleConflictError,
  ScheduleStore,
  triggerSchedule,
  updateSchedule,
} from "../../src/schedules/store.ts";
import { dbNow, runsOf, tickJobsOf } from "../fixtures/schedule-helpers.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const report = defineTask({
  name: "report",
  schema: z.object({ kind: z.enum(["daily", "weekly"]) }),
  handler: () => {},
  queue: "reports",
  priority: 5,
  maxAttempts: 3,
  timeoutMs: 60_000,
});
const tasks = new TaskRegistry([report]);

async function rejection(
  promise: Promise<unknown>,
): Promise<Error & { code?: string; details?: unknown }> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection");
}

describe("schedule operations and code-defined schedules", () => {
  let db: TestDb;
  let sql: SchemaSql;

  beforeAll(async () => {
    db = await createTestDb("schedules-store");
    sql = new SchemaSql(db.schema);
  });
  afterAll(async () => {
    await db?.close();
  });

  const row = async (name: string) =>
    (
      await db.query<{
        next_run_at: Date | null;
        last_tick_at: Date | null;
        revision: number;
        updated_at: Date;
        paused: boolean;
        cron: string;
        defined_by: string;
        owner: string | null;
      }>("SELECT * FROM {{schema}}.schedules WHERE name = $1", [name])
    )[0];

  it("create validates everything first, fills task defaults, plans the first tick, refuses a taken name", async () => {
    const invalid = await rejection(
      createSchedule(db.pool, sql, {
        name: "x",
        cron: "*/0 * * *",
        timeZone: "Atlantis/Capital",
        task: "report",
      }),
    );
    expect(invalid.code).toBe("INVALID_SCHEDULE");
    expect((invalid.details as Array<{ path: string }>).map((d) => d.path).sort()).toEqual([
      "cron",
      "timeZone",
    ]);
    const badPayload = await rejection(
      createSchedule(
        db.pool,
        sql,
        { name: "x", cron: "@daily", task: "report", payload: { kind: 1 } },
        { tasks },
      ),
    );
    expect(badPayload.code).toBe("INVALID_PAYLOAD");
    const unknown = await rejection(
      createSchedule(
        db.pool,
        sql,
        { name: "x", cron: "@daily", task: "nope" },
        { tasks, requireKnownTask: true },
      ),
    );
    expect(unknown.code).toBe("UNKNOWN_TASK");
    const nul = await rejection(
      createSchedule(db.pool, sql, {
        name: "x",
        cron: "@daily",
        task: "t",
        payload: { text: "a\u0000b" },
      }),
    );
    expect(nul.code).toBe("INVALID_SCHEDULE");
    expect(await db.query("SELECT name FROM {{schema}}.schedules")).toEqual([]);

    const before = await dbNow(db);
    const schedule = await createSchedule(
      db.pool,
      sql,
      {
        name: "daily-report",
        cron: "0 6 * * 1-5",
        timeZone: "America/New_York",
        task: "report",
        payload: { kind: "daily" },
      },
      { tasks },
    );
    expect(schedule).toMatchObject({
      cron: "0 6 * * 1-5",
      timeZone: "America/New_York",
      queue: "reports",
      priority: 5,
      maxAttempts: 3,
      timeoutMs: 60_000,
      definedBy: "library",
      paused: false,
      revision: 1,
    });
    expect(schedule.nextRunAt).toEqual(
      nextTick(compileSchedule("0 6 * * 1-5", "America/New_York"), before),
    );

    const taken = await rejection(
      createSchedule(db.pool, sql, { name: "daily-report", cron: "@daily", task: "t" }),
    );
    expect(taken).toBeInstanceOf(ScheduleConflictError);
    expect((taken as ScheduleConflictError).reason).toBe("exists");

    const paused = await createSchedule(db.pool, sql, {
      name: "later",
      cron: "@daily",
      task: "t",
      paused: true,
    });
    expect([paused.paused, paused.nextRunAt]).toEqual([true, null]);
  });

  it("equal definitions hash alike whatever the key order or spacing", () => {
    const a = defineSchedule({
      name: "a",
      cron: "0  3 * * *",
      task: "t",
      payload: { x: 1, y: { b: 2, a: 1 } },
    });
    const b = defineSchedule({
      name: "b",
      cron: "0 3 * * *",
      timeZone: "utc",
      task: "t",
      payload: { y: { a: 1, b: 2 }, x: 1 },
    });
    expect(a.hash).toBe(b.hash);
    expect(
      defineSchedule({ name: "c", cron: "0 3 * * *", task: "t", payload: { x: 2 } }).hash,
    ).not.toBe(a.hash);
  });

  it("get shows the next times and the newest runs with their jobs' outcomes, read through getJob", async () => {
    await createSchedule(db.pool, sql, { name: "shown", cron: "0 0 29 2 *", task: "t" });
    const first = await triggerSchedule(db.pool, sql, "shown");
    const second = await triggerSchedule(db.pool, sql, "shown");
    await cancelJobs(db.pool, sql, [first!.job.id]);
    await db.query("DELETE FROM {{schema}}.jobs WHERE id = $1", [second!.job.id]);
    const details = await getSchedule(db.pool, sql, "shown", { upcoming: 2 });
    expect(details!.upcoming.map((d) => d.toISOString().slice(5, 10))).toEqual(["02-29", "02-29"]);
    expect(details!.runs.map((r) => [r.jobId, r.job?.status ?? null])).toEqual([
      [second!.job.id, null],
      [first!.job.id, "cancelled"],
    ]);
    expect(await getSchedule(db.pool, sql, "nobody")).toBeNull();
  });

  it("list pages in name order and filters", async () => {
    const page = await listSchedules(db.pool, sql, { limit: 2 });
    expect(page.schedules.map((s) => s.name)).toEqual(["daily-report", "later"]);
    expect(page.nextCursor).toBe("later");
    const next = await listSchedules(db.pool, sql, { after: "later", limit: 2 });
    expect(next.schedules.map((s) => s.name)).toEqual(["shown"]);
    expect(next.nextCursor).toBeNull();
    expect(
      (await listSchedules(db.pool, sql, { task: "report" })).schedules.map((s) => s.name),
    ).toEqual(["daily-report"]);
    expect(
      (await listSchedules(db.pool, sql, { paused: true })).schedules.map((s) => s.name),
    ).toEqual(["later"]);
  });

  it("update: a new expression is planned from now, other changes keep the schedule's place; a stale revision writes nothing", async () => {
    const before = await row("daily-report");
    const renamed = await updateSchedule(
      db.pool,
      sql,
      "daily-report",
      { priority: null, payload: { kind: "weekly" } },
      { tasks },
    );
    expect(renamed).toMatchObject({ priority: null, payload: { kind: "weekly" }, revision: 2 });
    expect(renamed!.nextRunAt).toEqual(before!.next_run_at);

    const now = await dbNow(db);
    const moved = await updateSchedule(db.pool, sql, "daily-report", {
      cron: "*/5 * * * *",
      timeZone: "UTC",
    });
    expect(moved!.revision).toBe(3);
    const expected = nextTick(compileSchedule("*/5 * * * *"), now)!;
    expect([expected.getTime(), expected.getTime() + 300_000]).toContain(
      moved!.nextRunAt!.getTime(),
    );

    // A writer that read revision 2 lost the race: nothing is written.
    const stale = await updateScheduleRow(
      db.pool,
      sql,
      defineSchedule({ name: "daily-report", cron: "@yearly", task: "report" }),
      {
        revision: 2,
      },
    );
    expect(stale).toBeNull();
    expect((await row("daily-report"))!.cron).toBe("*/5 * * * *");

    expect(await updateSchedule(db.pool, sql, "nobody", { cron: "@daily" })).toBeNull();
    const invalid = await rejection(
      updateSchedule(db.pool, sql, "daily-report", { catchUp: "twice" as "once" }),
    );
    expect(invalid.code).toBe("INVALID_SCHEDULE");
  });

  it("delete removes the schedule and its runs, never its jobs", async () => {
    const triggered = await triggerSchedule(db.pool, sql, "later");
    const deleted = await deleteSchedule(db.pool, sql, "later");
    expect(deleted?.name).toBe("later");
    expect(await runsOf(db, "later")).toEqual([]);
    expect(await db.pgwake.getJob(triggered!.job.id)).not.toBeNull();
    expect(await deleteSchedule(db.pool, sql, "later")).toBeNull();
  });

  it("reconcile: created once, unchanged when equal, rewritten when a deployment differs (last start wins), pause and history kept", async () => {
    const v1 = [
      { name: "code-hourly", cron: "@hourly", task: "report", payload: { kind: "daily" } },
      {
        name: "code-daily",
        cron: "0 4 * * *",
        timeZone: "Europe/Berlin",
        task: "report",
        payload: { kind: "daily" },
      },
    ];
    const first = await reconcileSchedules(db.pool, sql, v1, { tasks });
    expect(first).toEqual({
      created: ["code-daily", "code-hourly"],
      updated: [],
      unchanged: [],
      deleted: [],
      conflicts: [],
    });
    const daily = await row("code-daily");
    expect(daily).toMatchObject({ defined_by: "code", owner: "default", revision: 1 });
    expect(daily!.next_run_at).not.toBeNull();
    // Task defaults are frozen into the row: the fire statement runs in SQL, without the registry.
    expect(
      (
        await db.query("SELECT queue, priority FROM {{schema}}.schedules WHERE name = 'code-daily'")
      )[0],
    ).toEqual({
      queue: "reports",
      priority: 5,
    });

    // The same declarations (another worker of the same deployment): nothing is written.
    const same = await reconcileSchedules(db.pool, sql, [...v1].reverse(), { tasks });
    expect(same.unchanged.sort()).toEqual(["code-daily", "code-hourly"]);
    expect((await row("code-daily"))!.updated_at).toEqual(daily!.updated_at);

    await pauseSchedule(db.pool, sql, "code-daily");
    await triggerSchedule(db.pool, sql, "code-daily");
    const v2 = [v1[0]!, { ...v1[1]!, cron: "0 5 * * *" }];
    const second = await reconcileSchedules(db.pool, sql, v2, { tasks });
    expect(second.updated).toEqual([
      { name: "code-daily", previousHash: expect.any(String), previousOwner: "default" },
    ]);
    const rewritten = await row("code-daily");
    expect(rewritten).toMatchObject({ cron: "0 5 * * *", paused: true, revision: 2 });
    expect(await runsOf(db, "code-daily")).toHaveLength(1);

    // The older deployment starting again takes it back: the last start wins.
    expect(
      (await reconcileSchedules(db.pool, sql, v1, { tasks })).updated.map((u) => u.name),
    ).toEqual(["code-daily"]);
    expect((await row("code-daily"))!.cron).toBe("0 4 * * *");
  });

  it("reconcile never takes a name defined another way, prunes only its own owner, and checks everything before writing", async () => {
    await createSchedule(
      db.pool,
      sql,
      { name: "ops-made", cron: "@daily", task: "report", payload: { kind: "daily" } },
      { definedBy: "http" },
    );
    await reconcileSchedules(
      db.pool,
      sql,
      [{ name: "billing-sync", cron: "@hourly", task: "sync" }],
      { owner: "billing" },
    );

    const result = await reconcileSchedules(
      db.pool,
      sql,
      [
        { name: "code-hourly", cron: "@hourly", task: "report", payload: { kind: "daily" } },
        { name: "ops-made", cron: "@weekly", task: "report", payload: { kind: "weekly" } },
      ],
      { tasks },
    );
    expect(result.conflicts).toEqual([{ name: "ops-made", definedBy: "http" }]);
    expect(result.deleted).toEqual(["code-daily"]); // no longer declared by this owner
    expect((await row("ops-made"))!.cron).toBe("@daily");
    expect(await row("billing-sync")).toMatchObject({ owner: "billing", defined_by: "code" });

    // A bad declaration fails the whole call before anything is written.
    const bad = await rejection(
      reconcileSchedules(
        db.pool,
        sql,
        [
          { name: "code-new", cron: "@daily", task: "report", payload: { kind: "daily" } },
          { name: "code-bad", cron: "@daily", task: "report", payload: { kind: "never" } },
        ],
        { tasks },
      ),
    );
    expect(bad.code).toBe("INVALID_PAYLOAD");
    expect(await row("code-new")).toBeUndefined();
    expect(await row("code-hourly")).toBeDefined();
    const twice = await rejection(
      reconcileSchedules(db.pool, sql, [
        { name: "dup", cron: "@daily", task: "t" },
        { name: "dup", cron: "@hourly", task: "t" },
      ]),
    );
    expect(twice.message).toMatch(/declared twice/);
  });

  it("many workers starting at once reconcile the same declarations without error, one row each", async () => {
    const specs = Array.from({ length: 20 }, (_, i) => ({
      name: `fleet-${i}`,
      cron: "@hourly",
      task: "t",
    }));
    const results = await Promise.all(
      Array.from({ length: 6 }, () => reconcileSchedules(db.pool, sql, specs, { owner: "fleet" })),
    );
    expect(results.flatMap((r) => r.created).sort()).toEqual(specs.map((s) => s.name).sort());
    const [rows] = await db.query<{ n: number; planned: number }>(
      "SELECT count(*)::int AS n, count(next_run_at)::int AS planned FROM {{schema}}.schedules WHERE owner = 'fleet'",
    );
    expect(rows).toEqual({ n: 20, planned: 20 });
  });

  it("schedules declared on task definitions", () => {
    const specs = schedulesOfTasks([
      { name: "report", schedules: { cron: "@daily", payload: { kind: "daily" } } },
      {
        name: "cleanup",
        schedules: [
          { name: "cleanup-hourly", cron: "@hourly" },
          { name: "cleanup-weekly", cron: "@weekly", catchUp: "skip" },
        ],
      },
      { name: "plain" },
    ]);
    expect(specs).toEqual([
      { name: "report", task: "report", cron: "@daily", payload: { kind: "daily" } },
      { name: "cleanup-hourly", task: "cleanup", cron: "@hourly" },
      { name: "cleanup-weekly", task: "cleanup", cron: "@weekly", catchUp: "skip" },
    ]);
    expect(() =>
      schedulesOfTasks([{ name: "x", schedules: [{ cron: "@daily" }, { cron: "@hourly" }] }]),
    ).toThrow(/declares 2 schedules: give each a name/);
  });

  it("the store object, the loop and the metrics", async () => {
    const store = new ScheduleStore(db.pool, sql, { definedBy: "library" });
    await store.create({ name: "looped", cron: "* * * * * *", task: "t", catchUp: "each" });
    const registry = new client.Registry();
    const metrics = new ScheduleMetrics(registry);
    const passes: RunDueSchedulesResult[] = [];
    const loop = new ScheduleLoop(db.pool, sql, {
      lookaheadMs: 0,
      onPass: (result) => {
        metrics.observe(result);
        passes.push(result);
      },
    });
    expect(loop.state).toBe("idle");
    loop.start();
    await waitFor(async () => (await tickJobsOf(db, "looped")).length >= 3, {
      timeoutMs: 15_000,
      message: "three ticks",
    });
    await loop.stop();
    expect(loop.state).toBe("stopped");
    const fired = passes.reduce((n, p) => n + p.fired, 0);
    expect(fired).toBeGreaterThanOrEqual(3);
    const text = await registry.metrics();
    expect(text).toContain(`${SCHEDULE_METRICS.fired} ${fired}`);
    expect(text).toContain(`${SCHEDULE_METRICS.skipped}{reason="overlap"} 0`);
    expect(text).toContain(`${SCHEDULE_METRICS.lateness}_count ${fired}`);
    // Stopped means stopped: no pass runs after stop() resolved.
    const count = passes.length;
    const jobs = (await tickJobsOf(db, "looped")).length;
    const nextRunAt = (
      await db.query<{ next_run_at: Date }>(
        "SELECT next_run_at FROM {{schema}}.schedules WHERE name = 'looped'",
      )
    )[0]!.next_run_at;
    await waitFor(async () => (await dbNow(db)) > new Date(nextRunAt.getTime() + 1_500), {
      message: "a tick to pass",
    });
    expect(passes.length).toBe(count);
    expect((await tickJobsOf(db, "looped")).length).toBe(jobs);
    expect((await store.get("looped"))?.schedule.ticksFired).toBe(jobs);
  });
});
