import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runningServer } from "../../src/embedded.ts";
import { Pgwake } from "../../src/index.ts";
import { BIN, finished, killAll, pgwake, type Run } from "../fixtures/cli/spawn.ts";
import { databaseUrl } from "../helpers/db.ts";
import { freePort } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";

// These tests run the real `pgwake` command (bin/pgwake.js) as child processes.

afterAll(killAll);

const uniqueSchema = (name: string) => `t_cli_${name}_${randomBytes(3).toString("hex")}`;

describe("pgwake --help and bad input", () => {
  it("prints the commands", async () => {
    const run = pgwake(["--help"]);
    expect((await finished(run)).code).toBe(0);
    for (const command of [
      "start",
      "api",
      "worker",
      "migrate",
      "enqueue",
      "jobs",
      "queues",
      "stats",
    ]) {
      expect(run.stdout()).toMatch(new RegExp(`^  ${command} `, "m"));
    }
  });

  it("prints each command's flags with their environment variables and defaults", async () => {
    const run = pgwake(["start", "--help"]);
    expect((await finished(run)).code).toBe(0);
    expect(run.stdout()).toContain("Usage: pgwake start");
    expect(run.stdout()).toMatch(/--concurrency <n>[\s\S]*PGWAKE_CONCURRENCY, default 16/);
    const enqueue = pgwake(["enqueue", "-h"]);
    expect((await finished(enqueue)).code).toBe(0);
    expect(enqueue.stdout()).toContain("--idempotency-key <key>");
  });

  it("exits 2 without a command, on an unknown command and on an unknown flag", async () => {
    const none = pgwake([]);
    expect((await finished(none)).code).toBe(2);
    const unknown = pgwake(["launch"]);
    expect((await finished(unknown)).code).toBe(2);
    expect(unknown.stderr()).toContain('unknown command "launch"');
    const flag = pgwake(["worker", "--colour", "blue"]);
    expect((await finished(flag)).code).toBe(2);
    expect(flag.stderr()).toContain("unknown flag --colour");
    expect(flag.stdout()).toBe("");
  });

  it("exits 2 listing every invalid setting, flags and environment alike", async () => {
    const run = pgwake(["worker", "--lease-ms", "soon"], {
      PGWAKE_CONCURRENCY: "zero",
      PORT: "99999",
      PGWAKE_NOTIFY: "sometimes",
      DATABASE_URL: "postgres://u:hunter2@127.0.0.1:1/x",
    });
    expect((await finished(run)).code).toBe(2);
    const stderr = run.stderr();
    expect(stderr).toContain("invalid configuration");
    expect(stderr).toMatch(/--lease-ms: must be a number/);
    expect(stderr).toMatch(/PGWAKE_CONCURRENCY: must be a number/);
    expect(stderr).toMatch(/PORT: must be at most 65535/);
    expect(stderr).toMatch(/PGWAKE_NOTIFY: must be on or off/);
    expect(stderr).not.toContain("hunter2");
  });

  it("exits 2 on a bad payload or bad job options before touching a database", async () => {
    const env = { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" };
    const json = pgwake(["enqueue", "demo.echo", "{oops"], env);
    expect((await finished(json)).code).toBe(2);
    expect(json.stderr()).toContain("payload is not valid JSON");
    const options = pgwake(
      ["enqueue", "demo.echo", "--priority", "high", "--max-attempts", "0"],
      env,
    );
    expect((await finished(options)).code).toBe(2);
    expect(options.stderr()).toContain("--priority: must be a number");
    expect(options.stderr()).toContain("--max-attempts: must be at least 1");
  });

  it("refuses a tasks module that does not exist or exports no tasks", async () => {
    const env = { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" };
    const missing = pgwake(["worker", "--tasks", "./nope/tasks.ts"], env);
    expect((await finished(missing)).code).toBe(2);
    expect(missing.stderr()).toContain("tasks module not found");
    const empty = pgwake(["worker", "--tasks", "test/fixtures/cli/empty-tasks.ts"], env);
    expect((await finished(empty)).code).toBe(2);
    expect(empty.stderr()).toContain("exports no task definitions");
  });

  it("exits 1 with the database named (password hidden) when Postgres is unreachable", async () => {
    const port = await freePort();
    const run = pgwake(["migrate"], { DATABASE_URL: `postgres://u:hunter2@127.0.0.1:${port}/x` });
    expect((await finished(run)).code).toBe(1);
    expect(run.stderr()).toContain(`127.0.0.1:${port}`);
    expect(run.stderr()).toContain("ECONNREFUSED");
    expect(run.stderr() + run.stdout()).not.toContain("hunter2");
  });
});

describe("pgwake against DATABASE_URL", () => {
  let pool: pg.Pool;
  const schemas: string[] = [];
  beforeAll(() => {
    pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
  });
  afterAll(async () => {
    for (const schema of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  it("migrate applies the schema, and a second run applies nothing", async () => {
    const schema = uniqueSchema("migrate");
    schemas.push(schema);
    const env = { DATABASE_URL: databaseUrl(), PGWAKE_SCHEMA: schema };
    const first = pgwake(["migrate"], env);
    expect((await finished(first)).code).toBe(0);
    const { rows } = await pool.query<{ version: number }>(
      `SELECT max(version) AS version FROM "${schema}".migrations`,
    );
    expect(rows[0]!.version).toBeGreaterThanOrEqual(1);
    const config = first.logs().find((l) => l.msg === "pgwake migrate: effective configuration");
    expect(config?.config).toMatchObject({
      schema,
      database: databaseUrl().replace(/:[^:@/]+@/, ":redacted@"),
    });
    const second = pgwake(["migrate"], env);
    expect((await finished(second)).code).toBe(0);
    expect(second.logs().find((l) => l.msg === "database schema is current")?.applied).toEqual([]);
  });

  it("worker refuses a schema that was never migrated", async () => {
    const schema = uniqueSchema("unmigrated");
    const run = pgwake(["worker"], { DATABASE_URL: databaseUrl(), PGWAKE_SCHEMA: schema });
    expect((await finished(run)).code).toBe(1);
    expect(run.stderr()).toContain("run `pgwake migrate` first");
  });

  it("worker runs a job from `pgwake enqueue` (a TypeScript task module) and exits 0 on SIGTERM", async () => {
    const schema = uniqueSchema("worker");
    schemas.push(schema);
    const env = { DATABASE_URL: databaseUrl(), PGWAKE_SCHEMA: schema };
    expect((await finished(pgwake(["migrate"], env))).code).toBe(0);

    const worker = pgwake(
      ["worker", "--tasks", "test/fixtures/cli/tasks.ts", "--queues", "default,other"],
      { ...env, PGWAKE_POLL_INTERVAL_MS: "500" },
    );
    await waitFor(() => worker.logs().some((l) => l.msg === "worker started"), {
      timeoutMs: 30_000,
      message: "the worker to start",
    });
    const started = worker.logs().find((l) => l.msg === "worker started")!;
    expect(started.tasks).toEqual(expect.arrayContaining(["fixture.shout", "demo.echo"]));
    // http.request calls any URL it is given: off unless PGWAKE_BUILTIN_TASKS asks for it.
    expect(started.tasks).not.toContain("http.request");

    const enqueue = pgwake(
      [
        "enqueue",
        "fixture.shout",
        '{"text":"hello"}',
        "--queue",
        "other",
        "--priority=-5",
        "--tasks",
        "test/fixtures/cli/tasks.ts",
      ],
      env,
    );
    expect((await finished(enqueue)).code).toBe(0);
    const { job: printed, duplicate } = JSON.parse(enqueue.stdout()) as {
      job: { id: number; queue: string; priority: number };
      duplicate: boolean;
    };
    expect(printed).toMatchObject({ queue: "other", priority: -5, status: "pending" });
    expect(duplicate).toBe(false);

    const job = await waitFor(
      async () => {
        const current = await new Pgwake({ pool, schema }).getJob(printed.id);
        return current?.status === "completed" ? current : null;
      },
      { timeoutMs: 30_000, message: "the job to complete" },
    );
    expect(job.result).toEqual({ loud: "HELLO" });

    // A handler's log line carries the job's identity and the worker's.
    const line = await waitFor(() => worker.logs().find((l) => l.msg === "shouting"));
    expect(line).toMatchObject({
      jobId: printed.id,
      task: "fixture.shout",
      queue: "other",
      attempt: 1,
    });
    expect(line.workerId).toBe(started.workerId);

    worker.child.kill("SIGTERM");
    expect(await finished(worker)).toEqual({ code: 0, signal: null });
    expect(worker.logs().map((l) => l.msg)).toEqual(
      expect.arrayContaining(["worker stopped", "stopped cleanly"]),
    );
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".workers`);
    expect(rows[0].n).toBe(0);
  });
});

describe("pgwake enqueue: unknown tasks and duplicates", () => {
  let pool: pg.Pool;
  let env: Record<string, string>;
  let schema: string;
  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
    schema = uniqueSchema("enqueue");
    env = { DATABASE_URL: databaseUrl(), PGWAKE_SCHEMA: schema };
    expect((await finished(pgwake(["migrate"], env))).code).toBe(0);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });
  const count = async () =>
    (await new Pgwake({ pool, schema }).listJobs({ limit: 1_000 })).jobs.length;

  it("refuses a task this process does not define, exit 2, and adds no job", async () => {
    const run = pgwake(["enqueue", "nosuch.task", "{}"], env);
    expect((await finished(run)).code).toBe(2);
    expect(run.stderr()).toContain('unknown task "nosuch.task"');
    expect(run.stderr()).toContain("demo.echo");
    expect(run.stderr()).toContain("--tasks");
    expect(run.stdout()).toBe("");
    expect(await count()).toBe(0);
  });

  it("accepts it with PGWAKE_UNKNOWN_TASKS=warn, with a warning", async () => {
    const run = pgwake(["enqueue", "elsewhere.task", "{}"], {
      ...env,
      PGWAKE_UNKNOWN_TASKS: "warn",
    });
    expect((await finished(run)).code).toBe(0);
    expect((JSON.parse(run.stdout()) as { job: { task: string } }).job.task).toBe("elsewhere.task");
    const warning = run.logs("stderr").find((l) => l.task === "elsewhere.task");
    expect(warning?.level).toBe(40);
  });

  it("flags a duplicate idempotency key in its JSON output", async () => {
    const args = ["enqueue", "demo.echo", '{"n":1}', "--idempotency-key", "order-7"];
    const first = pgwake(args, env);
    expect((await finished(first)).code).toBe(0);
    const second = pgwake(args, env);
    expect((await finished(second)).code).toBe(0);
    const a = JSON.parse(first.stdout()) as { job: { id: number }; duplicate: boolean };
    const b = JSON.parse(second.stdout()) as { job: { id: number }; duplicate: boolean };
    expect(a.duplicate).toBe(false);
    expect(b).toMatchObject({ duplicate: true, job: { id: a.job.id } });
  });

  it("knows no task with --no-builtin-tasks and no --tasks: any name is accepted", async () => {
    const run = pgwake(["enqueue", "anything.goes", "--no-builtin-tasks"], env);
    expect((await finished(run)).code).toBe(0);
    expect((JSON.parse(run.stdout()) as { job: { task: string } }).job.task).toBe("anything.goes");
  });
});

describe("signals", () => {
  let pool: pg.Pool;
  let schema: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
    schema = uniqueSchema("signals");
    env = { DATABASE_URL: databaseUrl(), PGWAKE_SCHEMA: schema, PGWAKE_POLL_INTERVAL_MS: "200" };
    expect((await finished(pgwake(["migrate"], env))).code).toBe(0);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  const jobStatus = async (id: number) => (await new Pgwake({ pool, schema }).getJob(id))?.status;
  /** Takes a handed-back job out of the way of the next test's worker. */
  const dropJob = (id: number) => new Pgwake({ pool, schema }).cancel([id]);

  async function runningSleep(worker: Run): Promise<number> {
    const enqueue = pgwake(["enqueue", "demo.sleep", '{"ms":600000}'], env);
    expect((await finished(enqueue)).code).toBe(0);
    const { id } = (JSON.parse(enqueue.stdout()) as { job: { id: number } }).job;
    await waitFor(async () => (await jobStatus(id)) === "running", {
      timeoutMs: 30_000,
      message: "the sleep job to run",
    });
    expect(worker.child.exitCode).toBeNull();
    return id;
  }

  it("SIGTERM past the grace period hands the running job back and exits 0", async () => {
    const worker = pgwake(["worker", "--shutdown-grace-ms", "300"], env);
    const id = await runningSleep(worker);
    worker.child.kill("SIGTERM");
    expect(await finished(worker)).toEqual({ code: 0, signal: null });
    expect(worker.logs().map((l) => l.msg)).toContain(
      "grace period over: aborting and returning running jobs",
    );
    expect(["pending", "retrying"]).toContain(await jobStatus(id));
    await dropJob(id);
  });

  it("a second signal stops waiting and exits 1", async () => {
    const worker = pgwake(["worker", "--shutdown-grace-ms", "600000"], env);
    const id = await runningSleep(worker);
    worker.child.kill("SIGTERM");
    await waitFor(() => worker.logs().some((l) => String(l.msg).startsWith("shutting down")), {
      message: "the first signal to be handled",
    });
    worker.child.kill("SIGINT");
    expect(await finished(worker)).toEqual({ code: 1, signal: null });
    expect(worker.logs().map((l) => l.msg)).toContain("second signal: exiting without waiting");
    await dropJob(id);
  });
});

describe("zero-setup: pgwake start without DATABASE_URL", () => {
  let base: string;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), "pgwake-cli-"));
    // Reachable by the postgres user (run as root, the embedded server runs as that user); the
    // unreachable case is test/package's.
    chmodSync(base, 0o755);
  });
  afterAll(() => {
    rmSync(base, { recursive: true, force: true });
  });

  it("starts an embedded Postgres, runs a job submitted over HTTP, and stops it all on SIGTERM", async () => {
    const dataDir = join(base, "postgres");
    const port = await freePort();
    const embeddedPort = await freePort();
    const env = {
      PGWAKE_DATA_DIR: dataDir,
      PORT: String(port),
      PGWAKE_EMBEDDED_PORT: String(embeddedPort),
    };
    const start = pgwake(["start"], env);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(
      async () => {
        if (start.child.exitCode !== null) throw new Error(`exited: ${start.stderr()}`);
        return (await fetch(`${url}/ready`)).ok;
      },
      { timeoutMs: 120_000, intervalMs: 200, message: "pgwake start to be ready" },
    );
    const messages = start.logs().map((l) => l.msg);
    expect(messages).toContain("initialising embedded Postgres (first start only)");
    const running = start
      .logs()
      .find((l) => String(l.msg).startsWith("embedded Postgres is running"));
    expect(running?.psql).toBe(
      `psql postgres://postgres:pgwake@127.0.0.1:${embeddedPort}/postgres`,
    );

    const response = await fetch(`${url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ task: "demo.echo", payload: { hello: "zero-setup" } }),
    });
    expect(response.status).toBe(201);
    const { job } = (await response.json()) as { job: { id: number } };
    const done = await waitFor(
      async () => {
        const current = (await (await fetch(`${url}/jobs/${job.id}`)).json()) as {
          status: string;
          result: unknown;
        };
        return current.status === "completed" ? current : null;
      },
      { timeoutMs: 30_000, intervalMs: 100, message: "the job to complete" },
    );
    expect(done.result).toEqual({ hello: "zero-setup" });
    // One /metrics for the process: the API's gauges and the worker's counters.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^pgwake_queue_depth\{queue="default"\} /m);
    expect(metrics).toMatch(/^pgwake_jobs_completed_total\{queue="default",task="demo.echo"\} 1$/m);

    // `pgwake enqueue` on the same data directory joins the running server.
    const enqueue = pgwake(["enqueue", "demo.echo", '{"n":2}'], env);
    expect((await finished(enqueue)).code).toBe(0);
    expect(enqueue.logs("stderr").map((l) => l.msg)).toContain(
      "reusing the embedded Postgres another pgwake process runs on this data directory",
    );
    const second = (JSON.parse(enqueue.stdout()) as { job: { id: number } }).job;
    expect(second.id).toBe(job.id + 1);

    const postgres = runningServer(dataDir);
    expect(postgres?.port).toBe(embeddedPort);
    start.child.kill("SIGTERM");
    expect(await finished(start)).toEqual({ code: 0, signal: null });
    expect(start.logs().map((l) => l.msg)).toContain("embedded Postgres stopped");
    expect(runningServer(dataDir)).toBeUndefined();
    expect(() => process.kill(postgres!.pid, 0)).toThrow();

    // The next run reuses the data directory: no initdb, and the jobs are still there.
    const again = pgwake(["enqueue", "demo.echo", "{}"], env);
    expect((await finished(again, 120_000)).code).toBe(0);
    const messagesAgain = again.logs("stderr").map((l) => l.msg);
    expect(messagesAgain).not.toContain("initialising embedded Postgres (first start only)");
    expect(messagesAgain).toContain("embedded Postgres stopped");
    expect((JSON.parse(again.stdout()) as { job: { id: number } }).job.id).toBe(second.id + 1);
    expect(runningServer(dataDir)).toBeUndefined();
  });

  it("a SIGTERM while starting stops the embedded Postgres and exits 0", async () => {
    const dataDir = join(base, "interrupted");
    const start = pgwake(["start"], {
      PGWAKE_DATA_DIR: dataDir,
      PORT: String(await freePort()),
      PGWAKE_EMBEDDED_PORT: String(await freePort()),
    });
    await waitFor(() => start.logs().some((l) => String(l.msg).startsWith("initialising")), {
      timeoutMs: 30_000,
      message: "initdb to begin",
    });
    start.child.kill("SIGTERM");
    expect(await finished(start, 120_000)).toEqual({ code: 0, signal: null });
    expect(runningServer(dataDir)).toBeUndefined();
  });

  it("says so when the embedded port is taken", async () => {
    const blocker = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker.listen(0, "127.0.0.1", () => resolve((blocker.address() as { port: number }).port)),
    );
    try {
      const run = pgwake(["migrate"], {
        PGWAKE_DATA_DIR: join(base, "clash"),
        PGWAKE_EMBEDDED_PORT: String(port),
      });
      expect((await finished(run, 120_000)).code).toBe(1);
      expect(run.stderr()).toContain(`port ${port} is already in use`);
      expect(run.stderr()).toContain("PGWAKE_EMBEDDED_PORT");
      expect(run.stderr()).not.toMatch(/undefined/);
    } finally {
      blocker.close();
    }
  });

  it("says so when the data directory is not a Postgres cluster", async () => {
    const dataDir = join(base, "junk");
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, "notes.txt"), "not a database");
    const run = pgwake(["migrate"], {
      PGWAKE_DATA_DIR: dataDir,
      PGWAKE_EMBEDDED_PORT: String(await freePort()),
    });
    expect((await finished(run)).code).toBe(1);
    expect(run.stderr()).toContain("holds no Postgres cluster (no PG_VERSION file)");
  });
});

describe("bin/pgwake.js on an unsupported Node", () => {
  it("stops with a clear message and exit 2 (Node 22.12 used to die on a .ts extension)", async () => {
    // The version Node reports is changed before bin/pgwake.js runs, as 22.12 would report it.
    const run = spawnNode([
      "--import",
      'data:text/javascript,Object.defineProperty(process.versions,"node",{value:"22.12.0"})',
      BIN,
      "--help",
    ]);
    const { code, stderr } = await run;
    expect(code).toBe(2);
    expect(stderr).toContain("pgwake needs Node.js 22.18 or newer; this is 22.12.0");
    expect(stderr).not.toMatch(/ERR_|\.ts/);
  });
});

function spawnNode(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.on("close", (code) => resolve({ code, stderr }));
  });
}
