import type pg from "pg";
import { quoteIdent, SchemaSql } from "../../src/db/sql.ts";
import type { Queryable } from "../../src/db/types.ts";
import { COUNT_CAP, queueStats } from "../../src/jobs/queueStats.ts";
import { WORKER_DEFAULTS } from "../../src/worker/options.ts";
import { type BenchChild, exitAll, spawnChildren } from "../lib/child.ts";
import { PGWAKE_DEFAULTS, variantChildConfig } from "../lib/configs.ts";
import type { BenchContext } from "../lib/context.ts";
import { formatNumber } from "../lib/format.ts";
import { nowMs, percentile, sleep, summarize, until } from "../lib/stats.ts";
import { createPgwake } from "../lib/systems.ts";
import { startApiProcess } from "./http.ts";

/** Maintenance interval of the worker during the windows: every service runs several times. */
const MAINTENANCE_MS = 1_000;
const ROWS_PER_STATEMENT = 500_000;

/**
 * The history ring as the workers' maintenance would have it with the default retention
 * (0003_engine.sql, `rotate_history`): slot width = retention / 5, and the epoch placed so that
 * now is in the middle of generation 10. Generations 5 to 10 are kept; generation 4 is past
 * the retention and is emptied (TRUNCATE of its slot) by the first maintenance pass after
 * `history_protect_until`.
 */
function ring() {
  const retentionMs = WORKER_DEFAULTS.retentionMs!;
  const widthMs = Math.max(100, Math.floor(retentionMs / 5));
  return { retentionMs, widthMs, nowGeneration: 10, kept: [5, 10] as const, expired: 4 };
}

const SET_RING = (q: string) => `
  UPDATE ${q}.settings
  SET history_slot_ms = $1::bigint,
      history_epoch = now() - ($1::bigint * 10.5) * interval '1 millisecond',
      history_protect_until = 'infinity', history_cleared = '{-1,-1,-1,-1,-1,-1,-1,-1}',
      updated_at = now()
  RETURNING history_epoch`;

// Rows $1..$2 of a span of `$3` finished jobs starting at id $7, spread evenly over [$4, $5]
// (epoch ms): 1 in 100 failed and
// 1 in 250 cancelled, the rest completed, over `$6` queues; the slot computed as history_slot()
// does (checked on a sample afterwards), inline because calling it per row costs minutes.
const FILL_HISTORY = (q: string) => `
  INSERT INTO ${q}.job_history
    (id, queue, task, payload, status, priority, run_at, attempts, max_attempts, lease_owner,
     last_error, created_at, started_at, finished_at, updated_at, slot)
  SELECT g.i, 'q' || (g.i % $6::integer), 'noop', '{}'::jsonb,
         CASE WHEN (g.i / $6::integer) % 100 = 0 THEN 'failed'
              WHEN (g.i / $6::integer) % 250 = 1 THEN 'cancelled' ELSE 'completed' END,
         0, g.f - interval '40 ms', 1, 10, 'bench-worker',
         CASE WHEN (g.i / $6::integer) % 100 = 0 THEN '{"message": "bench failure"}'::jsonb END,
         g.f - interval '50 ms', g.f - interval '10 ms', g.f, g.f,
         ((floor(extract(epoch FROM g.f - s.history_epoch) * 1000 / s.history_slot_ms)::bigint % 8 + 8) % 8)::smallint
  FROM (SELECT i, to_timestamp(($4::float8 + ($5::float8 - $4::float8) * (i - $7::bigint) / greatest(1, $3::bigint)) / 1000) AS f
        FROM generate_series($1::bigint, $2::bigint) i) g,
       ${q}.settings s`;

const CHECK_SLOTS = (q: string) => `
  SELECT count(*) FILTER (WHERE h.slot <> ${q}.history_slot(h.finished_at))::integer AS wrong,
         count(*)::integer AS checked
  FROM (SELECT slot, finished_at FROM ${q}.job_history TABLESAMPLE SYSTEM (1) LIMIT 2000) h`;

// What the workers would have counted as the jobs finished (queue_minutes), and the queues,
// as a running fleet's maintenance leaves them: minutes older than the last full hour folded into
// one row per hour (compactMinuteCounts, every 10 minutes), the recent ones per minute.
const FILL_MINUTES = (q: string) => `
  INSERT INTO ${q}.queue_minutes (queue, minute, completed, failed, cancelled, run_ms, wait_ms)
  SELECT queue,
         CASE WHEN finished_at < date_trunc('hour', now()) - interval '1 hour'
              THEN date_trunc('hour', finished_at) ELSE date_trunc('minute', finished_at) END,
         count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),
         count(*) FILTER (WHERE status = 'cancelled'), 30 * count(*), 10 * count(*)
  FROM ${q}.job_history GROUP BY 1, 2`;

interface WindowFigures {
  queues: number[];
  metrics: number[];
  starts: number[];
}

/** Requests `url` one at a time every `everyMs` until `stop()`; latencies in ms. */
function scrape(url: string, everyMs: number): { stop(): Promise<number[]> } {
  const latencies: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t = nowMs();
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status}`);
      latencies.push(nowMs() - t);
      const wait = everyMs - (nowMs() - t);
      if (wait > 0) await sleep(wait);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return latencies;
    },
  };
}

/** One window: scrapes both endpoints and submits single jobs, for `seconds`. */
async function measureWindow(
  ctx: BenchContext,
  api: string,
  child: BenchChild,
  enqueue: (i: number) => Promise<unknown>,
  seconds: number,
): Promise<WindowFigures> {
  const { jobIntervalMs, scrapeIntervalMs } = ctx.settings.scale;
  const { offsetMs } = await child.clockOffset();
  const before = child.handled;
  const queues = scrape(`${api}/queues`, scrapeIntervalMs);
  const metrics = scrape(`${api}/metrics`, scrapeIntervalMs);
  const sentAt: number[] = [];
  const submissions: Promise<unknown>[] = [];
  const t0 = nowMs();
  for (let i = 0; nowMs() < t0 + seconds * 1_000; i++) {
    const wait = t0 + i * jobIntervalMs - nowMs();
    if (wait > 1) await sleep(wait);
    sentAt.push(nowMs());
    submissions.push(enqueue(i));
  }
  await Promise.all(submissions);
  const figures = { queues: await queues.stop(), metrics: await metrics.stop(), starts: [] };
  await until(
    "every job to start",
    () => (child.handled - before >= sentAt.length ? true : undefined),
    { timeoutMs: 60_000, everyMs: 10 },
  );
  // Start times so far are collected by a stop/start cycle of the worker.
  const stopped = await child.request({ type: "stop" }, "stopped");
  await child.request({ type: "prepare" }, "prepared");
  await child.request({ type: "start" }, "started");
  return {
    ...figures,
    starts: stopped.starts
      .filter(([i]) => i < sentAt.length)
      .map(([i, startedAt]) => startedAt - offsetMs - sentAt[i]!),
  };
}

/** The statement behind `GET /queues` and `/metrics`, exactly as the API sends it. */
async function queueStatsText(schema: string): Promise<string> {
  let text = "";
  const recorder = {
    query: async (config: { text: string }) => {
      text = config.text;
      return { rows: [] };
    },
  } as unknown as Queryable;
  await queueStats(recorder, new SchemaSql(schema));
  return text;
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of the stats statement in a session with the server's settings (as
 * the API's pool has them) and with jit off: its time, JIT's share, and the nodes that read most.
 */
async function explainStats(pool: pg.Pool, schema: string): Promise<string> {
  const text = (await queueStatsText(schema)).replaceAll("$1", String(COUNT_CAP));
  const out: string[] = [];
  for (const jit of ["on (server setting)", "off"]) {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      if (jit === "off") await client.query("SET LOCAL jit = off");
      else await client.query("SET LOCAL jit = DEFAULT");
      const { rows } = await client.query<{ "QUERY PLAN": string }>(
        `EXPLAIN (ANALYZE, BUFFERS) ${text}`,
      );
      await client.query("ROLLBACK");
      const lines = rows.map((r) => r["QUERY PLAN"]);
      // Each "Buffers:" line belongs to the plan node above it.
      const reads: { node: string; hits: number }[] = [];
      let node = "";
      for (const line of lines) {
        if (line.includes("actual time=")) node = line.trim();
        const hits = /Buffers: shared hit=(\d+)/.exec(line)?.[1];
        if (hits) reads.push({ node, hits: Number(hits) });
      }
      const heavy = reads
        .sort((a, b) => b.hits - a.hits)
        .slice(0, 4)
        .map((r) => `    ${r.hits} buffers: ${r.node.slice(0, 160)}`);
      out.push(
        `  jit ${jit}: ${lines
          .filter(
            (l) =>
              /^(Execution Time|Planning Time| {2}Timing)/.test(l.trimStart()) ||
              l.startsWith("JIT") ||
              l.includes("Timing:"),
          )
          .map((l) => l.trim())
          .join("; ")}`,
        ...heavy,
      );
    } finally {
      client.release();
    }
  }
  return out.join("\n");
}

export async function fillHistory(
  ctx: BenchContext,
  pool: pg.Pool,
  schema: string,
): Promise<{ kept: number; expired: number; fillSeconds: number }> {
  const { historyRows, queues } = ctx.settings.scale;
  const q = quoteIdent(schema);
  const r = ring();
  const t0 = nowMs();
  const { rows } = await pool.query<{ history_epoch: Date }>(SET_RING(q), [r.widthMs]);
  const epoch = rows[0]!.history_epoch.getTime();
  const at = (generation: number) => epoch + generation * r.widthMs;
  const expired = Math.round(historyRows / 5);
  // Kept rows from the start of generation 5 to now (the middle of generation 10); then the
  // expired generation's rows.
  const spans = [
    { first: 1, count: historyRows, from: at(r.kept[0]), to: at(r.nowGeneration + 0.5) - 1_000 },
    { first: historyRows + 1, count: expired, from: at(r.expired), to: at(r.expired + 1) - 1 },
  ];
  for (const span of spans) {
    for (let lo = span.first; lo < span.first + span.count; lo += ROWS_PER_STATEMENT) {
      const hi = Math.min(span.first + span.count - 1, lo + ROWS_PER_STATEMENT - 1);
      ctx.progress.step(
        `scale: writing history rows ${lo.toLocaleString("en-US")}–${hi.toLocaleString("en-US")} of ${(historyRows + expired).toLocaleString("en-US")}`,
      );
      await pool.query(FILL_HISTORY(q), [
        lo,
        hi,
        span.count,
        span.from,
        span.to,
        queues,
        span.first,
      ]);
    }
  }
  ctx.progress.step("scale: per-minute counts, queues, ANALYZE");
  await pool.query(FILL_MINUTES(q));
  await pool.query(
    `INSERT INTO ${q}.queues (name) SELECT 'q' || i FROM generate_series(0, $1::integer - 1) i ON CONFLICT DO NOTHING`,
    [queues],
  );
  await pool.query(`SELECT setval('${q}.jobs_id_seq', $1::bigint)`, [historyRows + expired + 1]);
  await pool.query(`ANALYZE ${q}.job_history, ${q}.queue_minutes, ${q}.queues`);
  const check = await pool.query<{ wrong: number; checked: number }>(CHECK_SLOTS(q));
  if (check.rows[0]!.wrong > 0)
    throw new Error(
      `bench bug: ${check.rows[0]!.wrong} of ${check.rows[0]!.checked} sampled history rows are not in history_slot(finished_at)`,
    );
  return { kept: historyRows, expired, fillSeconds: (nowMs() - t0) / 1_000 };
}

/**
 * Scenario `scale`: a large history (5M finished jobs by default, written in SQL into the slots
 * the ring layout puts them in, plus a fifth as many in a generation past the retention), a real
 * `pgwake api` process and one worker process with the default retention and its maintenance
 * every second. In each window: `GET /queues` and `GET /metrics` one at a time every
 * `scrapeIntervalMs`, and one job submitted every `jobIntervalMs`, its start delay (submit →
 * handler start) measured as in `latency`. The expired slot is truncated by the worker's
 * maintenance a third of the way into the first measured window.
 */
export async function scaleScenario(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const { seconds } = ctx.settings.scale;
  const adapter = await createPgwake(ctx.url, "scale");
  const q = quoteIdent(adapter.schema);
  let api: Awaited<ReturnType<typeof startApiProcess>> | undefined;
  let children: BenchChild[] = [];
  const windows: WindowFigures[] = [];
  try {
    const filled = await fillHistory(ctx, adapter.pool, adapter.schema);
    ctx.progress.step("scale: EXPLAIN ANALYZE of the stats statement");
    ctx.notes.push({
      scenario: "scale",
      text: `EXPLAIN (ANALYZE, BUFFERS) of the statement behind GET /queues and /metrics over this history:\n${await explainStats(adapter.pool, adapter.schema)}`,
    });
    ctx.progress.step("scale: starting the API and the worker");
    api = await startApiProcess(ctx.url, adapter.schema);
    children = await spawnChildren(
      1,
      variantChildConfig(adapter, ctx.url, {
        ...PGWAKE_DEFAULTS,
        child: {
          pgwakeDefaults: true,
          recordStarts: true,
          pgwake: { maintenanceIntervalMs: MAINTENANCE_MS },
        },
      }),
    );
    const child = children[0]!;
    await child.request({ type: "prepare" }, "prepared");
    await child.request({ type: "start" }, "started");
    const enqueue = (i: number) => adapter.single({ i });
    for (let rep = 0; rep <= reps; rep++) {
      const warmup = rep === 0;
      if (rep === 1) {
        // Maintenance may drop the expired slot from a third of the way into this window on.
        await adapter.pool.query(
          `UPDATE ${q}.settings SET history_protect_until = now() + $1::bigint * interval '1 millisecond'`,
          [Math.round((seconds * 1_000) / 3)],
        );
      }
      ctx.progress.step(`scale: ${warmup ? "warm-up window" : `window ${rep}/${reps}`}`);
      const figures = await measureWindow(
        ctx,
        api.url,
        child,
        enqueue,
        warmup ? Math.min(3, seconds) : seconds,
      );
      if (!warmup) windows.push(figures);
    }
    const { rows } = await adapter.pool.query<{ n: number; cleared: string[] }>(
      `SELECT (SELECT count(*) FROM ${q}.job_history)::float8 AS n,
              (SELECT history_cleared::text[] FROM ${q}.settings) AS cleared`,
    );
    const truncated = rows[0]!.cleared.filter((g) => g !== "-1").length;
    ctx.notes.push({
      scenario: "scale",
      text: `history written in ${formatNumber(filled.fillSeconds)} s: ${filled.kept.toLocaleString("en-US")} rows within retention + ${filled.expired.toLocaleString("en-US")} in an expired slot; after the windows ${formatNumber(rows[0]!.n)} rows, ${truncated} slot(s) emptied by maintenance (${truncated > 0 ? "the expired one, during window 1" : "none: the expired slot was not dropped"})`,
    });
  } finally {
    await api?.close();
    for (const c of children) await c.request({ type: "stop" }, "stopped").catch(() => {});
    await exitAll(children);
    await adapter.drop();
  }
  const { historyRows, jobIntervalMs, scrapeIntervalMs } = ctx.settings.scale;
  const kase = (what: string) =>
    `${historyRows.toLocaleString("en-US")} finished jobs, ${what}, ${seconds} s windows, maintenance every ${MAINTENANCE_MS / 1_000} s`;
  const add = (what: string, metric: string, pick: (w: WindowFigures) => number) =>
    ctx.results.push({
      scenario: "scale",
      system: "pgwake",
      case: kase(what),
      metric,
      unit: "ms",
      better: "lower",
      summary: summarize(windows.map(pick)),
    });
  for (const [what, key] of [
    [`GET /queues every ${scrapeIntervalMs} ms`, "queues"],
    [`GET /metrics every ${scrapeIntervalMs} ms`, "metrics"],
    [`one job submitted every ${jobIntervalMs} ms, submit → handler start`, "starts"],
  ] as const) {
    add(what, "p50", (w) => percentile(w[key], 50));
    add(what, "p99", (w) => percentile(w[key], 99));
    add(what, "max", (w) => Math.max(...w[key]));
  }
  const p50 = (key: keyof WindowFigures) =>
    summarize(windows.map((w) => percentile(w[key], 50))).median;
  const worst = Math.max(...windows.map((w) => Math.max(...w.starts)));
  const rowsLabel = `${(historyRows / 1e6).toLocaleString("en-US")}M finished jobs`;
  const decided = windows.length > 0;
  ctx.verdicts.push(
    {
      issue: "#11",
      target: `${rowsLabel}: GET /queues p50 ≤ 50 ms`,
      measured: `${formatNumber(p50("queues"))} ms`,
      met: decided ? p50("queues") <= 50 : null,
    },
    {
      issue: "#11",
      target: `${rowsLabel}: GET /metrics p50 ≤ 50 ms`,
      measured: `${formatNumber(p50("metrics"))} ms`,
      met: decided ? p50("metrics") <= 50 : null,
    },
    {
      issue: "#11",
      target: `${rowsLabel}: a single job's start delay p50 ≤ 20 ms, max ≤ 500 ms while maintenance runs`,
      measured: `p50 ${formatNumber(p50("starts"))} ms, max ${formatNumber(worst)} ms`,
      met: decided ? p50("starts") <= 20 && worst <= 500 : null,
    },
  );
}
