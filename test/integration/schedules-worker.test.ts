import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../../src/api/app.ts";
import {
  type AnyTaskDefinition,
  defineTask,
  defineTaskReference,
  type KnownTask,
  Pgwake,
  type Worker,
  type WorkerOptions,
} from "../../src/index.ts";
import { createLogger } from "../../src/logger.ts";
import { SCHEDULE_METRICS } from "../../src/schedules/metrics.ts";
import { serveWorkerHealth, type WorkerHealthServer } from "../../src/worker/healthServer.ts";
import { finished, killAll, pgwake as pgwakeCli, type Run } from "../fixtures/cli/spawn.ts";
import {
  dbNow,
  expectEverySecondOnce,
  runsOf,
  tickJobsOf,
  waitForDbTime,
} from "../fixtures/schedule-helpers.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// The schedules as users run them: declared on task definitions or with `Pgwake.schedule`,
// reconciled and fired by `pgwake.worker()` and by the `pgwake worker` command, on a real Postgres.

const EVERY_SECOND = "* * * * * *";
const noop = () => ({ ok: true });

type LogLine = Record<string, unknown> & { msg: string; level: number };

/** A logger whose JSON lines the test reads (pino writes each line in one `write`). */
function capturedLogger() {
  const lines: LogLine[] = [];
  const logger = createLogger(
    { level: "info" },
    { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) },
  );
  return { logger, lines };
}

/** The counter's value in a registry; undefined when the registry has no such metric. */
async function counter(registry: Registry, name: string): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return undefined;
  return (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
}

/** The unlabelled sample of `name` in a Prometheus text page; undefined when absent. */
function sample(page: string, name: string): number | undefined {
  const line = page.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

interface ScheduleRow {
  name: string;
  cron: string;
  time_zone: string;
  task: string;
  payload: unknown;
  queue: string | null;
  defined_by: string;
  owner: string | null;
  revision: number;
  next_run_at: Date | null;
}

const rowsOf = (db: TestDb) =>
  db.query<ScheduleRow>(
    `SELECT name, cron, time_zone, task, payload, queue, defined_by, owner, revision, next_run_at
     FROM {{schema}}.schedules ORDER BY name COLLATE "C"`,
  );

const firedRuns = async (db: TestDb, schedule: string) =>
  (await runsOf(db, schedule)).filter((r) => r.trigger === "cron" && r.outcome === "fired");

const completedJobs = async (db: TestDb, task: string) =>
  (
    await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM {{schema}}.all_jobs WHERE task = $1 AND status = 'completed'",
      [task],
    )
  )[0]!.n;

describe("schedules run by workers", () => {
  const dbs: TestDb[] = [];
  const workers: Worker[] = [];
  const servers: WorkerHealthServer[] = [];

  afterAll(async () => {
    killAll();
    await Promise.all(workers.map((w) => w.stop({ graceMs: 1_000 })));
    await Promise.all(servers.map((s) => s.close()));
    await Promise.all(dbs.map((db) => db.close()));
  });

  const testDb = async (name: string, tasks: AnyTaskDefinition[] = []) => {
    const db = await createTestDb(name, { tasks });
    dbs.push(db);
    return db;
  };

  /** A client of the test's schema with its own task definitions (a deployment's code). */
  const deployment = (db: TestDb, tasks: KnownTask[]) =>
    new Pgwake({ pool: db.pool, schema: db.schema, connectionString: db.url, tasks });

  const started = async (
    client: Pgwake,
    options: Partial<Omit<WorkerOptions, "schema">> = {},
  ): Promise<Worker> => {
    const worker = client.worker({ pollIntervalMs: 500, concurrency: 4, ...options });
    workers.push(worker);
    await worker.start();
    return worker;
  };

  /** A worker's start and stop: what it reconciled is all that matters here. */
  const startedAndStopped = async (
    client: Pgwake,
    options: Partial<Omit<WorkerOptions, "schema">> = {},
  ): Promise<void> => {
    const worker = await started(client, options);
    await worker.stop({ graceMs: 1_000 });
  };

  it("fires a task's per-second schedule once per tick with two workers, and both /metrics count each tick once", async () => {
    const tick = defineTask({
      name: "every.second",
      handler: noop,
      schedules: { cron: EVERY_SECOND },
    });
    const db = await testDb("sw_tick", [tick]);
    const [one, two] = await Promise.all([started(db.pgwake), started(db.pgwake)]);
    const health = await Promise.all(
      [one!, two!].map((w) => serveWorkerHealth(w, { port: 0, host: "127.0.0.1" })),
    );
    servers.push(...health);

    // The workers run what they fire: wait for a few ticks' jobs to be done.
    await waitFor(async () => (await completedJobs(db, "every.second")) >= 2, {
      timeoutMs: 20_000,
      message: "per-second jobs completed",
    });
    await Promise.all([one!.stop({ graceMs: 2_000 }), two!.stop({ graceMs: 2_000 })]);

    const [row] = await rowsOf(db);
    expect(row).toMatchObject({
      name: "every.second",
      task: "every.second",
      cron: EVERY_SECOND,
      defined_by: "code",
      owner: "default",
    });
    // Every second from the first tick on was decided exactly once, and each made a job.
    const runs = await runsOf(db, "every.second");
    expect(runs.length).toBeGreaterThanOrEqual(3);
    const fired = expectEverySecondOnce(runs, runs[0]!.tick_at);
    expect(fired).toHaveLength(runs.length);
    const jobs = await tickJobsOf(db, "every.second");
    expect(jobs.map((j) => j.run_at.getTime())).toEqual(fired.map((t) => t.getTime()));
    expect(new Set(jobs.map((j) => j.idempotency_key)).size).toBe(jobs.length);
    expect(new Set(jobs.map((j) => j.task))).toEqual(new Set(["every.second"]));

    // Each tick is counted by the one worker that fired it: the two pages sum to the ticks.
    const pages = await Promise.all(
      health.map(async (s) => (await fetch(`${s.url}/metrics`)).text()),
    );
    const counts = pages.map((page) => sample(page, SCHEDULE_METRICS.fired));
    expect(counts).toEqual([
      await counter(one!.metrics.registry, SCHEDULE_METRICS.fired),
      await counter(two!.metrics.registry, SCHEDULE_METRICS.fired),
    ]);
    expect(counts[0]! + counts[1]!).toBe(fired.length);
  });

  it("a worker with schedules: false fires nothing; a worker with them on does", async () => {
    const tick = defineTask({
      name: "quiet.tick",
      handler: noop,
      schedules: { cron: EVERY_SECOND },
    });
    const db = await testDb("sw_off", [tick]);
    const quiet = await started(db.pgwake, { schedules: false });
    // It still reconciles: the schedule exists, planned, and its ticks come due unfired (a firing
    // process makes the jobs of the next 5 s at once).
    const [planned] = await rowsOf(db);
    expect(planned).toMatchObject({ name: "quiet.tick", defined_by: "code" });
    await waitForDbTime(db, new Date(planned!.next_run_at!.getTime() + 1_000));
    expect(await runsOf(db, "quiet.tick")).toEqual([]);
    expect(await tickJobsOf(db, "quiet.tick")).toEqual([]);
    expect((await rowsOf(db))[0]!.next_run_at).toEqual(planned!.next_run_at);
    expect(await counter(quiet.metrics.registry, SCHEDULE_METRICS.fired)).toBeUndefined();

    const firing = await started(db.pgwake);
    await waitFor(async () => (await tickJobsOf(db, "quiet.tick")).length >= 2, {
      timeoutMs: 15_000,
      message: "the firing worker's jobs",
    });
    await Promise.all([quiet.stop({ graceMs: 2_000 }), firing.stop({ graceMs: 2_000 })]);
    const fired = await firedRuns(db, "quiet.tick");
    expect(await counter(firing.metrics.registry, SCHEDULE_METRICS.fired)).toBe(fired.length);
    expect(await counter(quiet.metrics.registry, SCHEDULE_METRICS.fired)).toBeUndefined();
  });

  it("reconciles at start: a changed declaration is rewritten by the last worker to start, an equal one is left alone", async () => {
    const db = await testDb("sw_rewrite");
    const v1 = defineTask({
      name: "report",
      handler: noop,
      schedules: { cron: "0 3 * * *", payload: { kind: "daily" } },
    });
    const v2 = defineTask({
      name: "report",
      handler: noop,
      schedules: { cron: "0 4 * * *", timeZone: "Europe/Berlin", payload: { kind: "daily" } },
    });
    const old = await started(deployment(db, [v1]));
    expect(await rowsOf(db)).toMatchObject([
      { name: "report", cron: "0 3 * * *", time_zone: "UTC", defined_by: "code", revision: 1 },
    ]);

    // A rolling deploy: the new code starts while the old still runs; the last start wins.
    const log = capturedLogger();
    const next = await started(deployment(db, [v2]), { logger: log.logger });
    const [rewritten] = await rowsOf(db);
    expect(rewritten).toMatchObject({ cron: "0 4 * * *", time_zone: "Europe/Berlin", revision: 2 });
    // 04:00 in Berlin is 02:00 or 03:00 UTC.
    expect(rewritten!.next_run_at!.toISOString()).toMatch(/T0[23]:00:00\.000Z$/);
    expect(log.lines.find((l) => l.msg === "code schedules written")).toMatchObject({
      updated: [{ name: "report" }],
    });

    // Another worker of the same code writes nothing.
    await startedAndStopped(deployment(db, [v2]));
    expect((await rowsOf(db))[0]!.revision).toBe(2);
    // An old worker restarting flips it back.
    await startedAndStopped(deployment(db, [v1]));
    expect(await rowsOf(db)).toMatchObject([{ cron: "0 3 * * *", time_zone: "UTC", revision: 3 }]);
    await Promise.all([old.stop(), next.stop()]);
  });

  it("prunes a schedule no longer declared only from a worker running its task, never another owner's or another task's", async () => {
    const db = await testDb("sw_prune");
    const declaring = [
      defineTask({ name: "a", handler: noop, schedules: { cron: "0 1 * * *" } }),
      defineTask({ name: "b", handler: noop, schedules: { cron: "0 2 * * *" } }),
    ];
    await startedAndStopped(deployment(db, declaring));
    const otherOwner = defineTask({
      name: "a",
      handler: noop,
      schedules: { name: "a-other", cron: "0 5 * * *" },
    });
    await startedAndStopped(deployment(db, [otherOwner]), { scheduleOwner: "other" });
    const names = async () => (await rowsOf(db)).map((r) => `${r.name}/${r.owner}`).sort();
    expect(await names()).toEqual(["a-other/other", "a/default", "b/default"]);

    // Runs neither a nor b: their schedules are not its to prune.
    await startedAndStopped(deployment(db, [defineTask({ name: "c", handler: noop })]));
    expect(await names()).toEqual(["a-other/other", "a/default", "b/default"]);

    // Runs a, which declares no schedule any more: a's schedule of its owner goes, the rest stays.
    const log = capturedLogger();
    await startedAndStopped(
      deployment(db, [
        defineTask({ name: "a", handler: noop }),
        defineTask({ name: "c", handler: noop }),
      ]),
      { logger: log.logger },
    );
    expect(await names()).toEqual(["a-other/other", "b/default"]);
    expect(log.lines.find((l) => l.msg === "code schedules written")).toMatchObject({
      deleted: ["a"],
    });
  });

  it("reports a declared name already defined over HTTP as a conflict and keeps that schedule", async () => {
    const report = defineTask({ name: "report", handler: noop });
    const db = await testDb("sw_conflict", [report]);
    const app = createApp({ pgwake: db.pgwake });
    const created = await app.request("/schedules", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "nightly", cron: "0 6 * * *", task: "report" }),
    });
    expect(created.status).toBe(201);

    const declaring = defineTask({
      name: "report",
      handler: noop,
      schedules: [
        { name: "nightly", cron: "0 7 * * *" },
        { name: "hourly", cron: "@hourly" },
      ],
    });
    const log = capturedLogger();
    await startedAndStopped(deployment(db, [declaring]), { logger: log.logger });
    expect(await rowsOf(db)).toMatchObject([
      { name: "hourly", cron: "@hourly", defined_by: "code" },
      { name: "nightly", cron: "0 6 * * *", defined_by: "http", owner: null, revision: 1 },
    ]);
    const warning = log.lines.find((l) => Array.isArray(l.conflicts));
    expect(warning).toMatchObject({
      level: 40,
      conflicts: [{ name: "nightly", definedBy: "http" }],
    });
  });

  it("reconciles schedules declared with Pgwake.schedule, checked as enqueue checks a job, and fires them", async () => {
    const db = await testDb("sw_declared");
    const counted = defineTask({
      name: "counted",
      schema: z.object({ n: z.number().default(7) }),
      queue: "counting",
      handler: noop,
    });
    // A task another deployment runs, known here by reference.
    const remote = defineTaskReference({
      name: "remote.report",
      schema: z.object({ kind: z.enum(["daily", "weekly"]) }),
      queue: "reports",
    });
    const startFailure = (client: Pgwake) =>
      client
        .worker()
        .start()
        .then(
          () => null,
          (error: { code?: string }) => error.code,
        );
    // What the client refuses to enqueue stops the worker's start before anything is written.
    for (const [payload, task, code] of [
      [{ n: "seven" }, "counted", "INVALID_PAYLOAD"],
      [{ kind: "hourly" }, "remote.report", "INVALID_PAYLOAD"],
      [{}, "nobody.runs.this", "UNKNOWN_TASK"],
    ] as const) {
      const broken = deployment(db, [counted, remote]).schedule({
        name: "broken",
        cron: EVERY_SECOND,
        task,
        payload,
      });
      expect(await startFailure(broken), task).toBe(code);
    }
    expect(await rowsOf(db)).toEqual([]);
    // Nor is a worker left registered by a start that failed.
    expect(await db.query("SELECT id FROM {{schema}}.workers")).toEqual([]);

    const client = deployment(db, [counted, remote])
      .schedule({ name: "declared", cron: EVERY_SECOND, task: "counted" })
      .schedule({
        name: "remote",
        cron: "0 6 * * *",
        task: "remote.report",
        payload: { kind: "daily" },
      });
    const worker = await started(client);
    expect(await rowsOf(db)).toMatchObject([
      // The tasks' defaults, filled in as an enqueue would: a schema's default, a queue.
      {
        name: "declared",
        task: "counted",
        payload: { n: 7 },
        queue: "counting",
        defined_by: "code",
      },
      { name: "remote", task: "remote.report", queue: "reports", defined_by: "code" },
    ]);
    await waitFor(async () => (await completedJobs(db, "counted")) >= 1, {
      timeoutMs: 15_000,
      message: "a job of the declared schedule completed",
    });
    expect((await tickJobsOf(db, "declared"))[0]).toMatchObject({
      task: "counted",
      queue: "counting",
      payload: { n: 7 },
    });
    await worker.stop({ graceMs: 1_000 });
  });

  describe("pgwake worker --tasks <module>", () => {
    let dir: string;
    let module: string;
    beforeAll(() => {
      // A task module as a user writes it, outside the repository.
      dir = mkdtempSync(join(tmpdir(), "pgwake-schedules-"));
      module = join(dir, "tasks.ts");
      const index = pathToFileURL(join(import.meta.dirname, "../../src/index.ts")).href;
      writeFileSync(
        module,
        `import { defineTask } from ${JSON.stringify(index)};

export const tick = defineTask({
  name: "cli.tick",
  handler: () => ({ ok: true }),
  schedules: { cron: ${JSON.stringify(EVERY_SECOND)} },
});

export const report = defineTask({
  name: "cli.report",
  handler: () => {},
  schedules: { name: "cli-held", cron: "0 8 * * *" },
});
`,
      );
    });
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const env = (db: TestDb, extra: Record<string, string> = {}) => ({
      DATABASE_URL: db.url,
      PGWAKE_SCHEMA: db.schema,
      PGWAKE_HEALTH_PORT: "0",
      PGWAKE_HEALTH_HOST: "127.0.0.1",
      PGWAKE_POLL_INTERVAL_MS: "500",
      ...extra,
    });

    /** The health page's URL from the worker's log. */
    const healthUrl = (run: Run) =>
      waitFor(
        () =>
          run.logs().find((l) => l.msg === "worker health, readiness and metrics served")?.url as
            | string
            | undefined,
        { timeoutMs: 30_000, message: "the health server" },
      );

    it("fires the module's schedules (a name held by the CLI stays), and with PGWAKE_SCHEDULES=off does not", async () => {
      const [on, off] = await Promise.all([testDb("sw_cli_on"), testDb("sw_cli_off")]);

      const quiet = pgwakeCli(["worker", "--tasks", module], env(off, { PGWAKE_SCHEDULES: "off" }));
      // An operator made "cli-held" with the CLI before the code declared it.
      const create = pgwakeCli(
        ["schedules", "create", "cli-held", "--cron", "0 9 * * *", "--task", "cli.report"],
        env(on, { PGWAKE_TASKS: module }),
      );
      expect((await finished(create)).code, create.stderr()).toBe(0);
      const firing = pgwakeCli(
        ["worker", "--tasks", module],
        env(on, { PGWAKE_SCHEDULE_OWNER: "cli-fleet" }),
      );
      const [firingUrl, quietUrl] = await Promise.all([healthUrl(firing), healthUrl(quiet)]);

      await waitFor(async () => (await completedJobs(on, "cli.tick")) >= 2, {
        timeoutMs: 20_000,
        message: "the command's per-second jobs completed",
      });
      const page = await (await fetch(`${firingUrl}/metrics`)).text();
      expect(sample(page, SCHEDULE_METRICS.fired)).toBeGreaterThanOrEqual(2);
      expect(await rowsOf(on)).toMatchObject([
        { name: "cli-held", cron: "0 9 * * *", defined_by: "cli" },
        { name: "cli.tick", cron: EVERY_SECOND, defined_by: "code", owner: "cli-fleet" },
      ]);
      expect(firing.logs().find((l) => Array.isArray(l.conflicts))).toMatchObject({
        conflicts: [{ name: "cli-held", definedBy: "cli" }],
      });

      // The quiet one reconciled (the schedule is there) but leaves its due ticks alone.
      const [held, declared] = await rowsOf(off);
      expect(held).toMatchObject({
        name: "cli-held",
        cron: "0 8 * * *",
        defined_by: "code",
        owner: "default",
      });
      await waitForDbTime(off, new Date(declared!.next_run_at!.getTime() + 1_000));
      expect(await runsOf(off, "cli.tick")).toEqual([]);
      expect(await tickJobsOf(off, "cli.tick")).toEqual([]);
      expect((await rowsOf(off))[1]!.next_run_at).toEqual(declared!.next_run_at);
      expect((await dbNow(off)).getTime()).toBeGreaterThan(declared!.next_run_at!.getTime());
      const quietPage = await (await fetch(`${quietUrl}/metrics`)).text();
      expect(quietPage).toContain("pgwake_jobs_started_total");
      expect(sample(quietPage, SCHEDULE_METRICS.fired)).toBeUndefined();

      firing.child.kill("SIGTERM");
      quiet.child.kill("SIGTERM");
      expect(await finished(firing)).toEqual({ code: 0, signal: null });
      expect(await finished(quiet)).toEqual({ code: 0, signal: null });
    });

    it("pgwake start (API and worker in one process) serves the worker's schedule metrics on the API's /metrics", async () => {
      const db = await testDb("sw_cli_start");
      const { PGWAKE_HEALTH_PORT: _none, ...settings } = env(db, { PORT: "0", HOST: "127.0.0.1" });
      const start = pgwakeCli(["start", "--tasks", module], settings);
      const url = await waitFor(
        () => start.logs().find((l) => typeof l.url === "string" && l.workerId)?.url as string,
        { timeoutMs: 30_000, message: "pgwake start to be ready" },
      );
      await waitFor(async () => (await firedRuns(db, "cli.tick")).length >= 1, {
        timeoutMs: 20_000,
        message: "a tick fired by pgwake start",
      });
      const page = await (await fetch(`${url}/metrics`)).text();
      // The settings promise it ("pgwake start serves them with its API"), and there is no other
      // place: the health port is pgwake worker's.
      expect(page).toContain("pgwake_queue_depth");
      expect(
        sample(page, SCHEDULE_METRICS.fired) ?? 0,
        `${SCHEDULE_METRICS.fired} on the API's /metrics`,
      ).toBeGreaterThanOrEqual(1);
      start.child.kill("SIGTERM");
      expect(await finished(start)).toEqual({ code: 0, signal: null });
    });
  });
});
