/**
 * Shared pieces of the fault suite: real `pgwake` processes, a private schema with the
 * fixture's side-effect table, and the profile (full by default, `PGWAKE_FAULTS_PROFILE=ci` for
 * the shortened CI run).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";
import type { FixtureWorkerOptions } from "./fixtures/worker.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const CLI = join(ROOT, "bin/pgwake.js");
export const TASKS = join(ROOT, "test/faults/fixtures/tasks.ts");
export const WORKER_FIXTURE = join(ROOT, "test/faults/fixtures/worker.ts");

/** `ci` runs every scenario in a shortened form; anything else is the full numbers. */
export const PROFILE: "ci" | "full" = process.env.PGWAKE_FAULTS_PROFILE === "ci" ? "ci" : "full";
export const pick = <T>(full: T, ci: T): T => (PROFILE === "ci" ? ci : full);

/** A migrated private schema plus `fault_executions`, the fixture handlers' side-effect table. */
export async function createFaultDb(name: string): Promise<TestDb> {
  const db = await createTestDb(`f_${name}`);
  await db.query(`CREATE TABLE {{schema}}.fault_executions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL,
    attempt     integer NOT NULL,
    pid         integer NOT NULL,
    worker_id   text NOT NULL,
    task        text NOT NULL,
    note        text,
    queue       text,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- when the handler was entered, by the worker's clock (the same host as Postgres)
    entered_at  timestamptz,
    finished_at timestamptz,
    -- why a handler that honours its signal stopped early (the abort reason's code)
    aborted     text
  )`);
  await db.query("CREATE INDEX ON {{schema}}.fault_executions (job_id)");
  return db;
}

/** The connection string with an application_name, which pg lets the URL set over its default. */
export function withAppName(url: string, name: string): string {
  const u = new URL(url);
  u.searchParams.set("application_name", name);
  return u.toString();
}

/** A child process of the fault suite: `pgwake …` or a fixture script. */
export interface PgwakeProcess {
  child: ChildProcess;
  pid: number;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  readonly alive: boolean;
  /** The last lines it wrote (stdout and stderr), for failure messages. */
  output(): string;
  /** Every JSON log line it wrote so far (pino: `level`, `time`, `msg`, …), in order. */
  logs(): LogLine[];
}

/** A pino JSON line. */
export interface LogLine {
  level: number;
  time: number;
  msg: string;
  [field: string]: unknown;
}

const spawned = new Set<PgwakeProcess>();

/** Starts `node <args…>` in the repository with `env` added, keeping its output and log lines. */
function spawnNode(args: readonly string[], env: Record<string, string>): PgwakeProcess {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  // The fixtures exit when their stdin ends: a crashed test process leaves no orphan behind.
  child.stdin?.on("error", () => {});
  const lines: string[] = [];
  const logs: LogLine[] = [];
  let partial = "";
  const keep = (chunk: Buffer) => {
    const text = chunk.toString();
    lines.push(text);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
    partial += text;
    const complete = partial.split("\n");
    partial = complete.pop() ?? "";
    for (const line of complete) {
      if (!line.startsWith("{")) continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let alive = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>(
    (resolve) =>
      child.once("exit", (code, signal) => {
        alive = false;
        resolve({ code, signal, at: Date.now() });
      }),
  );
  const proc: PgwakeProcess = {
    child,
    pid: child.pid!,
    exited,
    get alive() {
      return alive;
    },
    output: () => lines.join(""),
    logs: () => logs,
  };
  spawned.add(proc);
  void exited.then(() => spawned.delete(proc));
  return proc;
}

/** Starts `pgwake <command> …` against a database URL and schema. */
export function spawnPgwake(options: {
  command: "worker" | "api" | "start";
  url: string;
  schema: string;
  args?: readonly string[];
  env?: Record<string, string>;
}): PgwakeProcess {
  return spawnNode(
    [
      CLI,
      options.command,
      "--tasks",
      TASKS,
      "--no-builtin-tasks",
      "--log-format",
      "json",
      "--log-level",
      process.env.PGWAKE_FAULTS_LOG_LEVEL ?? "warn",
      ...(options.args ?? []),
    ],
    { DATABASE_URL: options.url, PGWAKE_SCHEMA: options.schema, ...options.env },
  );
}

/**
 * Starts a library worker (test/faults/fixtures/worker.ts) with options the CLI does not offer.
 * `sideUrl` is where the fixture tasks write their side effects (default: straight to Postgres,
 * out of the way of any proxy the worker goes through).
 */
export function spawnFixtureWorker(
  db: TestDb,
  options: Omit<FixtureWorkerOptions, "schema" | "connectionString"> & {
    connectionString?: string;
    sideUrl?: string;
  },
): PgwakeProcess {
  const { sideUrl, connectionString, ...rest } = options;
  return spawnNode([WORKER_FIXTURE], {
    PGWAKE_FAULTS_WORKER: JSON.stringify({
      retentionMs: null,
      ...rest,
      connectionString: connectionString ?? db.url,
      schema: db.schema,
    }),
    DATABASE_URL: sideUrl ?? db.url,
    PGWAKE_SCHEMA: db.schema,
  });
}

/** The worker id a fixture worker logged at start (waits for it). */
export async function fixtureWorkerId(proc: PgwakeProcess, timeoutMs = 30_000): Promise<string> {
  const line = await waitFor(
    () => {
      if (!proc.alive) throw new Error(`worker ${proc.pid} died:\n${proc.output()}`);
      return proc.logs().find((l) => l.msg === "fixture: worker started");
    },
    { timeoutMs, message: `worker ${proc.pid} started` },
  );
  return String(line.workerId);
}

/** SIGKILLs every process this file started that still runs (test cleanup). */
export async function killAll(): Promise<void> {
  const left = [...spawned];
  for (const proc of left) proc.child.kill("SIGKILL");
  await Promise.all(left.map((p) => p.exited));
}

/** Common worker flags: short lease so that crashes are recovered quickly. */
export function workerArgs(
  options: { leaseMs?: number; heartbeatMs?: number; concurrency?: number; pollMs?: number } = {},
) {
  return [
    "--lease-ms",
    String(options.leaseMs ?? 3_000),
    "--heartbeat-ms",
    String(options.heartbeatMs ?? 1_000),
    "--concurrency",
    String(options.concurrency ?? 8),
    "--poll-interval-ms",
    String(options.pollMs ?? 1_000),
    "--retention",
    "forever",
    "--shutdown-grace-ms",
    "5000",
  ];
}

/** Waits until `count` workers of this schema have registered (heartbeat rows). */
export async function workersRegistered(db: TestDb, pids: readonly number[]): Promise<boolean> {
  const rows = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM {{schema}}.workers WHERE pid = ANY($1::int[])",
    [pids],
  );
  return rows[0]!.n === pids.length;
}

/** Inserts `count` jobs of `task` straight through enqueue_many, in chunks. */
export async function enqueueBulk(
  db: TestDb,
  task: string,
  count: number,
  payload: unknown = {},
  extra: Record<string, unknown> = {},
): Promise<void> {
  for (let done = 0; done < count; done += 5_000) {
    const n = Math.min(5_000, count - done);
    await db.query("SELECT count(*) FROM {{schema}}.enqueue_many($1::jsonb)", [
      JSON.stringify(Array.from({ length: n }, () => ({ task, payload, ...extra }))),
    ]);
  }
}

/** Job counts by status. */
export async function statusCounts(db: TestDb): Promise<Record<string, number>> {
  const rows = await db.query<{ status: string; n: number }>(
    "SELECT status, count(*)::int AS n FROM {{schema}}.all_jobs GROUP BY status",
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** Jobs that ran more than once (side table), and whether each has a lease_expired event. */
export async function duplicateExecutions(
  db: TestDb,
): Promise<{ jobId: number; runs: number; leaseExpired: number; returned: number }[]> {
  return db.query(
    `SELECT e.job_id::int AS "jobId", count(*)::int AS runs,
            (SELECT count(*)::int FROM {{schema}}.job_events v
              WHERE v.job_id = e.job_id AND v.kind = 'lease_expired') AS "leaseExpired",
            (SELECT count(*)::int FROM {{schema}}.job_events v
              WHERE v.job_id = e.job_id AND v.kind = 'returned') AS "returned"
     FROM {{schema}}.fault_executions e
     GROUP BY e.job_id HAVING count(*) > 1
     ORDER BY e.job_id`,
  );
}

/** Prints a scenario's figures in one block a reader can find in the test output. */
export function report(scenario: string, figures: Record<string, unknown>): void {
  const lines = Object.entries(figures).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`);
  console.log(`\n[faults:${PROFILE}] ${scenario}\n${lines.join("\n")}\n`);
}
