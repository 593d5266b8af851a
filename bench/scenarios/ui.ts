/**
 * The dashboard's reads with a large history (issue 14): how fast the API calls the overview
 * polls answer — GET /queues, GET /workers, GET /stats/minutes — with 5 million finished jobs
 * in history, through a real `pgwake api`; and, for comparison, the other reads the pages make
 * and the bulk actions' costs.
 *
 *   node bench/scenarios/ui.ts [--history 5000000] [--queues 20] [--failed 1] [--cancelled 0.5]
 *                              [--samples 200]
 *
 * against DATABASE_URL (a fresh schema, dropped at the end). History is written straight into
 * `job_history` in a few large INSERTs (not by running jobs: 5M jobs would take an hour), with a
 * 7-day retention's slot width so rows spread over the ring's partitions like real ones; plus the
 * per-minute counts of 7 days, 20,000 ready and 5,000 scheduled live jobs, and 8 live workers.
 * Requests are sent one at a time, after a warm-up; figures are milliseconds from the request to
 * the last byte of the answer, as the browser sees them on this machine.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { migrate } from "../../src/db/migrate.ts";
import { SchemaSql } from "../../src/db/sql.ts";
import { bulkJobs } from "../../src/jobs/bulk.ts";
import { queueStats } from "../../src/jobs/queueStats.ts";
import { percentile } from "../lib/stats.ts";

export interface UiBenchOptions {
  url: string;
  /** Finished jobs written to history. */
  history: number;
  queues: number;
  /** Percent of history failed, and cancelled; the rest completed. */
  failedPercent: number;
  cancelledPercent: number;
  /** Requests measured per call. */
  samples: number;
  /** Measure an existing schema this scenario filled before (kept with PGWAKE_KEEP_SCHEMAS). */
  reuse?: string;
  log?: (line: string) => void;
}

export interface CallFigures {
  call: string;
  /** Whether the overview polls it. */
  overview: boolean;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

const WEEK_MS = 7 * 86_400_000;
const CHUNK = 500_000;

// One chunk of history: ids [$1, $2], spread evenly over the last 6 days by id, queue by id
// modulo, a failed and cancelled share by id; the slot is the one the engine would write.
const FILL_HISTORY = `
  INSERT INTO {{schema}}.job_history
    (id, queue, task, payload, status, priority, run_at, attempts, max_attempts, timeout_ms,
     idempotency_key, request_id, lease_owner, result, last_error, created_at, started_at,
     finished_at, updated_at, concurrency_key, slot)
  SELECT s.g, s.queue, 'bench.task-' || (s.g % 5), jsonb_build_object('n', s.g), s.status, 0, s.t,
         CASE WHEN s.status = 'failed' THEN 3 ELSE 1 END, 3, NULL, NULL, NULL, 'bench-worker',
         CASE WHEN s.status = 'completed' THEN '{"ok":true}'::jsonb END,
         CASE WHEN s.status = 'failed'
              THEN '{"name":"Error","message":"boom","stack":"Error: boom\\n    at handler (tasks.ts:1:1)"}'::jsonb END,
         s.t, s.t + interval '5 ms', s.t + interval '25 ms', s.t + interval '25 ms', NULL,
         {{schema}}.history_slot(s.t + interval '25 ms')
  FROM (
    SELECT g, 'queue-' || lpad((1 + g % $3)::text, 2, '0') AS queue,
           CASE WHEN g % 10000 < $4 THEN 'failed' WHEN g % 10000 < $4 + $5 THEN 'cancelled'
                ELSE 'completed' END AS status,
           now() - interval '6 days' + (g::double precision / $6) * interval '6 days' AS t
    FROM generate_series($1::bigint, $2::bigint) g
  ) s`;

/** Writes the data set; returns the number of failed jobs of queue-01. */
async function fill(pool: pg.Pool, sql: SchemaSql, o: UiBenchOptions, log: (l: string) => void) {
  const q = (text: string, values?: unknown[]) => pool.query(sql.render(text), values);
  // The slot width maintenance sets for a 7-day retention (its first call only sets it).
  await q("SELECT * FROM {{schema}}.rotate_history($1)", [WEEK_MS]);
  await q(
    "INSERT INTO {{schema}}.queues (name) SELECT 'queue-' || lpad(i::text, 2, '0') FROM generate_series(1, $1::integer) i",
    [o.queues],
  );
  const started = performance.now();
  for (let from = 1; from <= o.history; from += CHUNK) {
    const to = Math.min(o.history, from + CHUNK - 1);
    await q(FILL_HISTORY, [
      from,
      to,
      o.queues,
      Math.round(o.failedPercent * 100),
      Math.round(o.cancelledPercent * 100),
      o.history,
    ]);
    log(`history: ${to.toLocaleString("en")} of ${o.history.toLocaleString("en")} rows`);
  }
  log(`history written in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  await q("SELECT setval('{{schema}}.jobs_id_seq', $1::bigint)", [o.history + 1]);
  await q(
    `INSERT INTO {{schema}}.queue_minutes (queue, minute, completed, failed, cancelled, retried, run_ms, wait_ms)
     SELECT q.name, m, 600, 6, 3, 9, 600 * 20, 600 * 4
     FROM {{schema}}.queues q,
          generate_series(date_trunc('minute', now()) - interval '7 days', date_trunc('minute', now()),
                          interval '1 minute') m`,
  );
  // Live jobs: ready and due later, over every queue.
  await q(
    `SELECT count(*) FROM {{schema}}.enqueue_many((
       SELECT jsonb_agg(jsonb_build_object(
         'task', 'bench.task-1', 'queue', 'queue-' || lpad((1 + g % $1)::text, 2, '0'),
         'delay_ms', CASE WHEN g % 7 = 0 THEN 3600000 ELSE 0 END))
       FROM generate_series(1, 25000) g))`,
    [o.queues],
  );
  await q(
    `INSERT INTO {{schema}}.workers
       (id, host, pid, queues, tasks, concurrency, listening, lease_expires_at, running, running_by_queue)
     SELECT 'bench-worker-' || i, 'host-' || i, 1000 + i, ARRAY['*'], ARRAY['bench.task-1'], 16, true,
            now() + interval '1 hour', 0, '{}'::jsonb
     FROM generate_series(1, 8) i`,
  );
  // Statistics as autovacuum would have them (the test server runs without it).
  const tables = await pool.query<{ name: string }>(
    "SELECT tablename AS name FROM pg_tables WHERE schemaname = $1",
    [sql.schema],
  );
  for (const { name } of tables.rows) await q(`ANALYZE {{schema}}."${name}"`);
  const size = await q(
    "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) AS size FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{{schema}}.job_history'::regclass",
  );
  log(`history size with indexes: ${size.rows[0].size}`);
  const failed = await q(
    "SELECT count(*)::integer AS n FROM {{schema}}.job_history WHERE queue = 'queue-01' AND status = 'failed'",
  );
  return failed.rows[0].n as number;
}

/** `pgwake api` on the schema; resolves with its address. */
async function startApi(
  url: string,
  schema: string,
): Promise<{ child: ChildProcess; base: string }> {
  const bin = fileURLToPath(new URL("../../bin/pgwake.js", import.meta.url));
  const child = spawn(process.execPath, [bin, "api"], {
    env: {
      ...process.env,
      DATABASE_URL: url,
      PGWAKE_SCHEMA: schema,
      PORT: "0",
      PGWAKE_LOG_FORMAT: "json",
      PGWAKE_LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  // Logs at info, as in production: one line per request, read and dropped here.
  return await new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`pgwake api exited with ${code}`)));
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      try {
        const parsed = JSON.parse(line) as { url?: string };
        if (parsed.url) resolve({ child, base: parsed.url });
      } catch {
        // not a log line
      }
    });
  });
}

async function measure(
  base: string,
  path: string,
  samples: number,
  warmup = 20,
): Promise<Omit<CallFigures, "call" | "overview">> {
  const once = async () => {
    const started = performance.now();
    const res = await fetch(`${base}${path}`);
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
    return performance.now() - started;
  };
  const warmupDeadline = performance.now() + 20_000;
  for (let i = 0; i < warmup && performance.now() < warmupDeadline; i++) await once();
  // At most a minute per call: a slow call gets fewer samples (at least 5).
  const deadline = performance.now() + 60_000;
  const times: number[] = [];
  while (times.length < samples && (times.length < 5 || performance.now() < deadline)) {
    times.push(await once());
  }
  const round = (v: number) => Math.round(v * 10) / 10;
  return {
    p50: round(percentile(times, 50)),
    p95: round(percentile(times, 95)),
    p99: round(percentile(times, 99)),
    max: round(Math.max(...times)),
  };
}

/** Runs the scenario; returns the figures of each call. */
export async function measureUiReads(options: UiBenchOptions): Promise<CallFigures[]> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const schema = options.reuse ?? `bench_ui_${randomBytes(3).toString("hex")}`;
  const pool = new pg.Pool({ connectionString: options.url, max: 2 });
  const sql = new SchemaSql(schema);
  let api: { child: ChildProcess; base: string } | undefined;
  const figures: CallFigures[] = [];
  try {
    let failedInQueue = 0;
    if (!options.reuse) {
      await migrate(pool, { schema });
      failedInQueue = await fill(pool, sql, options, log);
    }
    // Where GET /queues spends its time: its statement in process, with the server's JIT setting
    // and without JIT (its plan's estimated cost is high enough for the server to compile it).
    for (const jit of ["default", "off"] as const) {
      const client = await pool.connect();
      try {
        if (jit === "off") await client.query("SET jit = off");
        const times: number[] = [];
        for (let i = 0; i < 12; i++) {
          const started = performance.now();
          await queueStats(client, sql);
          if (i >= 2) times.push(performance.now() - started);
        }
        const p50 = Math.round(percentile(times, 50));
        log(`queue_stats statement, jit ${jit}: p50 ${p50} ms`);
        figures.push({
          call: `queue_stats statement in process, jit ${jit === "off" ? "off" : "as the server has it"}`,
          overview: false,
          p50,
          p95: Math.round(percentile(times, 95)),
          p99: Math.round(percentile(times, 99)),
          max: Math.round(Math.max(...times)),
        });
      } finally {
        client.release();
      }
    }
    api = await startApi(options.url, schema);
    const calls: Array<[string, string, boolean]> = [
      ["GET /queues", "/queues", true],
      ["GET /workers", "/workers", true],
      ["GET /stats/minutes?minutes=60", "/stats/minutes?minutes=60", true],
      [
        "GET /stats/minutes?minutes=60&queue=queue-01",
        "/stats/minutes?minutes=60&queue=queue-01",
        false,
      ],
      ["GET /jobs?limit=50 (jobs page)", "/jobs?limit=50", false],
      [
        "GET /jobs?queue=queue-01&status=failed&limit=50",
        "/jobs?queue=queue-01&status=failed&limit=50",
        false,
      ],
      [`GET /jobs/${options.history - 10} (a job page)`, `/jobs/${options.history - 10}`, false],
      [`GET /jobs/${options.history - 10}/events`, `/jobs/${options.history - 10}/events`, false],
      ["GET /ui (the page)", "/ui", false],
    ];
    for (const [call, path, overview] of calls) {
      const f = await measure(api.base, path, options.samples);
      figures.push({ call, overview, ...f });
      log(`${call}: p50 ${f.p50} ms, p99 ${f.p99} ms`);
    }
    // The unfiltered dead-letter list has no index of its own: a few samples, for the record.
    const slow = await measure(api.base, "/jobs?status=failed&limit=50", 5, 1);
    figures.push({ call: "GET /jobs?status=failed&limit=50 (no queue)", overview: false, ...slow });

    // Bulk: a dry run and a retry of queue-01's failed jobs, timed in process.
    const timed = async (
      label: string,
      run: () => Promise<{ affected: number; batches: number }>,
    ) => {
      const started = performance.now();
      const result = await run();
      const ms = Math.round(performance.now() - started);
      log(`${label}: ${result.affected} jobs, ${result.batches} statements, ${ms} ms`);
      figures.push({
        call: `${label} (${result.affected} jobs, ${result.batches} statements)`,
        overview: false,
        p50: ms,
        p95: ms,
        p99: ms,
        max: ms,
      });
    };
    const filter = { queue: "queue-01", statuses: ["failed" as const] };
    await timed("bulk retry dry run, failed of queue-01", () =>
      bulkJobs(pool, sql, "retry", filter, { dryRun: true }),
    );
    // A reused schema is measured again later: its failed jobs stay failed.
    if (!options.reuse) {
      await timed("bulk retry, failed of queue-01", () => bulkJobs(pool, sql, "retry", filter));
    }
    await timed("bulk delete dry run, completed of queue-01 (capped)", () =>
      bulkJobs(
        pool,
        sql,
        "delete",
        { queue: "queue-01", statuses: ["completed"] },
        { dryRun: true },
      ),
    );
    if (failedInQueue) log(`queue-01 had ${failedInQueue} failed jobs`);
    return figures;
  } finally {
    api?.child.kill("SIGTERM");
    if (process.env.PGWAKE_KEEP_SCHEMAS || options.reuse) log(`kept schema ${schema}`);
    else await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await pool.end();
  }
}

function printTable(figures: CallFigures[], options: UiBenchOptions): void {
  const rows = figures.map(
    (f) => `| ${f.call}${f.overview ? " ★" : ""} | ${f.p50} | ${f.p95} | ${f.p99} | ${f.max} |`,
  );
  console.log(
    [
      `${options.history.toLocaleString("en")} finished jobs in history over ${options.queues} queues (${options.failedPercent}% failed, ${options.cancelledPercent}% cancelled); ★ the overview polls it`,
      "",
      "| call | p50 ms | p95 ms | p99 ms | max ms |",
      "|---|---|---|---|---|",
      ...rows,
    ].join("\n"),
  );
  const over = figures.filter((f) => f.overview && f.p50 > 100);
  console.log(
    over.length === 0
      ? "\nverdict: every overview call answers within 100 ms at p50"
      : `\nverdict: over 100 ms at p50: ${over.map((f) => f.call).join(", ")}`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      history: { type: "string", default: "5000000" },
      queues: { type: "string", default: "20" },
      failed: { type: "string", default: "1" },
      cancelled: { type: "string", default: "0.5" },
      samples: { type: "string", default: "200" },
      reuse: { type: "string" },
    },
  });
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error("set DATABASE_URL: the scenario writes a fresh schema there and drops it");
    process.exit(2);
  }
  const options: UiBenchOptions = {
    url,
    history: Number(values.history),
    queues: Number(values.queues),
    failedPercent: Number(values.failed),
    cancelledPercent: Number(values.cancelled),
    samples: Number(values.samples),
    ...(values.reuse ? { reuse: values.reuse } : {}),
  };
  printTable(await measureUiReads(options), options);
}
