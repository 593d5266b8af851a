/**
 * Tick lateness with many schedules firing every minute (issue 13): 10,000 schedules of
 * `* * * * *`, fired by service processes (the schedule loop, as a worker's maintenance would run
 * it), their jobs run by a worker with a no-op handler.
 *
 *   node bench/scenarios/schedules.ts [--schedules 10000] [--ticks 2] [--services 2]
 *                                     [--concurrency 200] [--zones]
 *
 * against DATABASE_URL (a fresh schema, dropped at the end). For each measured minute tick it
 * reports, from the database and from the handlers:
 * - made: when the tick's job was made relative to the tick (schedule_runs.late_ms; negative:
 *   made ahead, due at the tick), and how long the whole burst took to write;
 * - start: when each job's handler started relative to the tick (the worker's wall clock minus
 *   the job's run_at, which is the tick) — the "starts within ~1 s" figure;
 * - exactly once: runs and jobs per tick, which must both equal the number of schedules.
 * `--zones` spreads the schedules over 24 whole-hour zones (they still fire together, but the
 * next-tick computation cannot be shared across all of them).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { migrate } from "../../src/db/migrate.ts";
import { createPool } from "../../src/db/pool.ts";
import { quoteIdent, SchemaSql } from "../../src/db/sql.ts";
import { defineTask, Worker } from "../../src/index.ts";
import { ScheduleLoop } from "../../src/schedules/loop.ts";
import type { BenchContext } from "../lib/context.ts";
import { percentile, summarize } from "../lib/stats.ts";

const ZONES = [
  "UTC",
  "Europe/London",
  "Europe/Berlin",
  "Europe/Athens",
  "Europe/Moscow",
  "Asia/Dubai",
  "Asia/Karachi",
  "Asia/Dhaka",
  "Asia/Bangkok",
  "Asia/Shanghai",
  "Asia/Tokyo",
  "Australia/Brisbane",
  "Pacific/Guadalcanal",
  "Pacific/Auckland",
  "Pacific/Tongatapu",
  "Pacific/Kiritimati",
  "Atlantic/Azores",
  "Atlantic/South_Georgia",
  "America/Sao_Paulo",
  "America/New_York",
  "America/Chicago",
  "America/Denver",
  "America/Los_Angeles",
  "Pacific/Honolulu",
];

export interface ScheduleBenchOptions {
  url: string;
  schedules: number;
  /** Minute ticks measured after one warm-up tick. */
  ticks: number;
  /** Processes running the schedule loop. */
  services: number;
  /** Jobs the worker runs at once. */
  concurrency: number;
  zones: boolean;
  log?: (line: string) => void;
}

export interface TickFigures {
  tick: string;
  runs: number;
  jobs: number;
  started: number;
  madeP50Ms: number;
  madeP99Ms: number;
  madeMaxMs: number;
  /** From the first to the last job of the tick being written. */
  burstMs: number;
  startP50Ms: number;
  startP99Ms: number;
  startMaxMs: number;
}

/** Runs the scenario; returns the figures of each measured tick. */
export async function measureScheduleLateness(
  options: ScheduleBenchOptions,
): Promise<TickFigures[]> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const schema = `bench_schedules_${randomBytes(3).toString("hex")}`;
  const pool = createPool({
    connectionString: options.url,
    max: 4,
    applicationName: "bench-schedules",
  });
  const services: ChildProcess[] = [];
  let worker: Worker | undefined;
  try {
    await migrate(pool, { schema });
    const sql = new SchemaSql(schema);
    const q = (text: string, values?: unknown[]) => pool.query(sql.render(text), values);
    await q(
      `INSERT INTO {{schema}}.schedules (name, cron, time_zone, task)
       SELECT 'bench-' || i, '* * * * *', ($2::text[])[1 + i % cardinality($2::text[])], 'bench.tick'
       FROM generate_series(1, $1::integer) i`,
      [options.schedules, options.zones ? ZONES : ["UTC"]],
    );
    await q("ANALYZE {{schema}}.schedules");

    // Handler start minus tick (run_at), by tick.
    const starts = new Map<number, number[]>();
    const tick = defineTask({
      name: "bench.tick",
      handler: (_payload, ctx) => {
        const due = ctx.job.runAt.getTime();
        const list = starts.get(due) ?? [];
        if (list.length === 0) starts.set(due, list);
        list.push(Date.now() - due);
      },
    });
    worker = new Worker({
      connectionString: options.url,
      schema,
      tasks: [tick],
      concurrency: options.concurrency,
      maintenanceIntervalMs: 0,
    });
    await worker.start();

    for (let i = 0; i < options.services; i++)
      services.push(await startService(options.url, schema, i));
    const planned = async () =>
      Number((await q("SELECT count(next_run_at) AS n FROM {{schema}}.schedules")).rows[0].n);
    while ((await planned()) < options.schedules) await new Promise((r) => setTimeout(r, 200));
    log(`${options.schedules} schedules planned by ${options.services} service process(es)`);

    const [{ first }] = (await q("SELECT min(next_run_at) AS first FROM {{schema}}.schedules"))
      .rows;
    const figures: TickFigures[] = [];
    for (let n = 0; n <= options.ticks; n++) {
      const at = new Date((first as Date).getTime() + n * 60_000);
      const label = n === 0 ? "warm-up" : `tick ${n}/${options.ticks}`;
      log(`${label}: waiting for ${at.toISOString()}`);
      const deadline = at.getTime() + 60_000;
      while ((starts.get(at.getTime())?.length ?? 0) < options.schedules && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
      }
      const made = await q(
        `SELECT late_ms::float8 AS late_ms, decided_at FROM {{schema}}.schedule_runs
         WHERE tick_at = $1 AND outcome = 'fired' AND trigger = 'cron'`,
        [at],
      );
      const jobs = Number(
        (await q("SELECT count(*) AS n FROM {{schema}}.all_jobs WHERE run_at = $1", [at])).rows[0]
          .n,
      );
      const late = made.rows.map((r) => r.late_ms as number);
      const decided = made.rows.map((r) => (r.decided_at as Date).getTime());
      const started = starts.get(at.getTime()) ?? [];
      const row: TickFigures = {
        tick: at.toISOString(),
        runs: made.rows.length,
        jobs,
        started: started.length,
        madeP50Ms: percentile(late, 50),
        madeP99Ms: percentile(late, 99),
        madeMaxMs: Math.max(...late),
        burstMs: decided.length ? Math.max(...decided) - Math.min(...decided) : Number.NaN,
        startP50Ms: percentile(started, 50),
        startP99Ms: percentile(started, 99),
        startMaxMs: Math.max(...started),
      };
      log(`${label}: ${JSON.stringify(row)}`);
      if (n > 0) figures.push(row);
    }
    return figures;
  } finally {
    for (const child of services) child.kill("SIGKILL");
    await worker?.stop({ graceMs: 1_000 });
    await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`).catch(() => {});
    await pool.end();
  }
}

/** A child process running the schedule loop on its own pool; resolves after its first pass. */
function startService(url: string, schema: string, index: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--service"], {
    env: { ...process.env, BENCH_URL: url, BENCH_SCHEMA: schema, BENCH_SERVICE: String(index) },
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`service ${index} exited with ${code}`)));
    createInterface({ input: child.stdout! }).once("line", () => resolve(child));
  });
}

async function runService(): Promise<void> {
  const url = process.env.BENCH_URL!;
  const pool = createPool({
    connectionString: url,
    max: 3,
    applicationName: "bench-schedule-service",
  });
  let first = true;
  const loop = new ScheduleLoop(pool, new SchemaSql(process.env.BENCH_SCHEMA!), {
    onPass: () => {
      if (first) {
        first = false;
        process.stdout.write("ready\n");
      }
    },
  });
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
  loop.start();
}

/**
 * Scenario `schedules` of the suite: `measureScheduleLateness` against the bench's database with
 * the mode's sizes; each measured minute tick is a repetition (after a warm-up tick).
 */
export async function schedulesScenario(ctx: BenchContext): Promise<void> {
  const { schedules, ticks, services } = ctx.settings.schedules;
  const figures = await measureScheduleLateness({
    url: ctx.url,
    schedules,
    ticks,
    services,
    concurrency: 200,
    zones: false,
    log: (line) => ctx.progress.step(`schedules: ${line.slice(0, 100)}`),
  });
  const kase = `${schedules.toLocaleString("en-US")} schedules every minute, ${services} service processes, 1 worker (concurrency 200); a repetition is a minute tick`;
  const row = (metric: string, unit: string, pick: (f: TickFigures) => number) =>
    ctx.results.push({
      scenario: "schedules",
      system: "pgwake",
      case: kase,
      metric,
      unit,
      better: "lower",
      summary: summarize(figures.map(pick)),
    });
  row("job made, p50 after the tick", "ms", (f) => f.madeP50Ms);
  row("job made, p99 after the tick", "ms", (f) => f.madeP99Ms);
  row("burst: first to last job written", "ms", (f) => f.burstMs);
  row("handler start, p50 after the tick", "ms", (f) => f.startP50Ms);
  row("handler start, p99 after the tick", "ms", (f) => f.startP99Ms);
  row("handler start, max after the tick", "ms", (f) => f.startMaxMs);
  row(
    "runs or jobs missing or extra",
    "per tick",
    (f) => Math.abs(f.runs - schedules) + Math.abs(f.jobs - schedules),
  );
}

function fixed(ms: number): string {
  return Number.isFinite(ms) ? `${Math.round(ms)} ms` : "—";
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      service: { type: "boolean" },
      schedules: { type: "string", default: "10000" },
      ticks: { type: "string", default: "2" },
      services: { type: "string", default: "2" },
      concurrency: { type: "string", default: "200" },
      zones: { type: "boolean", default: false },
    },
  });
  if (values.service) {
    await runService();
  } else {
    const url = process.env.DATABASE_URL ?? process.env.PGWAKE_TEST_DATABASE_URL;
    if (!url) {
      console.error("set DATABASE_URL");
      process.exit(2);
    }
    const options = {
      url,
      schedules: Number(values.schedules),
      ticks: Number(values.ticks),
      services: Number(values.services),
      concurrency: Number(values.concurrency),
      zones: values.zones === true,
    };
    const figures = await measureScheduleLateness(options);
    console.log(
      `\n${options.schedules} schedules every minute, ${options.services} service processes, 1 worker (concurrency ${options.concurrency})${options.zones ? ", 24 zones" : ""}`,
    );
    console.log(
      "tick                      runs   jobs   made p50  made p99  burst     start p50  start p99  start max",
    );
    for (const f of figures) {
      console.log(
        [
          f.tick.padEnd(25),
          String(f.runs).padStart(5),
          String(f.jobs).padStart(6),
          fixed(f.madeP50Ms).padStart(9),
          fixed(f.madeP99Ms).padStart(9),
          fixed(f.burstMs).padStart(9),
          fixed(f.startP50Ms).padStart(10),
          fixed(f.startP99Ms).padStart(10),
          fixed(f.startMaxMs).padStart(10),
        ].join(" "),
      );
    }
    console.log(
      JSON.stringify({ scenario: "schedules", options: { ...options, url: undefined }, figures }),
    );
  }
}
