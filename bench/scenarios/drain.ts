import type pg from "pg";
import { SchemaSql } from "../../src/db/sql.ts";
import type { Queryable } from "../../src/db/types.ts";
import { claimJobs, SWEEP_PRIORITY } from "../../src/jobs/claim.ts";
import { registerWorker } from "../../src/jobs/heartbeat.ts";
import { type BenchChild, exitAll, spawnChildren } from "../lib/child.ts";
import {
  GRAPHILE_DOCS,
  graphileVariant,
  PGBOSS_DRAIN,
  PGWAKE_DEFAULTS,
  variantChildConfig,
  type WorkerVariant,
} from "../lib/configs.ts";
import type { BenchContext } from "../lib/context.ts";
import type { ChildConfig } from "../lib/protocol.ts";
import { sleep, summarize, until } from "../lib/stats.ts";
import { createPgwake, dbNowMs, type SystemAdapter } from "../lib/systems.ts";

export interface DrainRun {
  jobsPerSecond: number;
  seconds: number;
  claimQueries: number;
}

/** Worker settings of each system for draining a backlog (pgwake with `concurrency`). */
export function drainChildConfig(
  adapter: SystemAdapter,
  url: string,
  concurrency?: number,
): ChildConfig {
  if (adapter.name === "pgwake")
    return {
      ...variantChildConfig(adapter, url, PGWAKE_DEFAULTS),
      pgwakeDefaults: false,
      concurrency: concurrency ?? 100,
    };
  if (adapter.name === "graphile")
    return variantChildConfig(adapter, url, graphileVariant(GRAPHILE_DOCS));
  return variantChildConfig(adapter, url, PGBOSS_DRAIN);
}

/**
 * One drain: empty the table, bulk-insert `jobs`, VACUUM ANALYZE, then signal every worker
 * process to start and time until the database shows no unfinished job (both ends read from
 * the database clock).
 */
export async function drainOnce(
  adapter: SystemAdapter,
  children: readonly BenchChild[],
  jobs: number,
  chunk: number,
  handleTimeoutMs = Math.max(60_000, jobs),
  hooks: { beforeFill?: () => Promise<void>; beforeStart?: () => Promise<void> } = {},
): Promise<DrainRun> {
  await adapter.reset();
  await hooks.beforeFill?.();
  await adapter.bulk(jobs, chunk);
  await adapter.vacuum();
  await Promise.all(children.map((c) => c.request({ type: "prepare" }, "prepared")));
  for (const c of children) c.handled = 0;
  await hooks.beforeStart?.();
  const pool = (adapter as { pool?: pg.Pool }).pool;
  const startedAt = pool ? await dbNowMs(pool) : (await adapter.remaining()).at;
  const started = children.map((c) => c.request({ type: "start" }, "started"));
  await Promise.all(started);
  await until(
    "every job to be handled",
    () => {
      const handled = children.reduce((sum, c) => sum + c.handled, 0);
      return handled >= jobs ? true : undefined;
    },
    { timeoutMs: handleTimeoutMs, everyMs: 5 },
  );
  const finishedAt = await until(
    "the database to show every job finished",
    async () => {
      const { remaining, at } = await adapter.remaining();
      return remaining === 0 ? at : undefined;
    },
    { timeoutMs: 30_000, everyMs: 5 },
  );
  const stopped = await Promise.all(children.map((c) => c.request({ type: "stop" }, "stopped")));
  const seconds = (finishedAt - startedAt) / 1_000;
  return {
    jobsPerSecond: jobs / seconds,
    seconds,
    claimQueries: stopped.reduce((sum, s) => sum + (s.extra.claimQueries ?? 0), 0),
  };
}

/** What a scenario does around each measured drain of `interleavedDrains`. */
export interface DrainHooks {
  /** After the job table was emptied, before the backlog is inserted. */
  beforeFill?(entry: DrainEntry, index: number): Promise<void>;
  /** After the backlog is inserted and vacuumed, just before the workers get the start signal. */
  beforeStart(entry: DrainEntry, index: number): Promise<void>;
  /** After every job finished and the worker processes exited (their statistics flushed). */
  afterExit(entry: DrainEntry, index: number, run: DrainRun, jobs: number): Promise<void>;
}

/** One system configuration in a series of interleaved drains. */
export interface DrainEntry {
  adapter: SystemAdapter;
  variant: WorkerVariant;
}

/**
 * Drains of several configurations, interleaved: a warm-up round of each, then `reps` rounds,
 * each running every configuration once in turn (fresh worker processes every time), so that a
 * change of the machine's load touches them all alike. Returns jobs/s per entry, in order.
 * `around` runs before and after each measured drain (e.g. to read WAL positions).
 */
export async function interleavedDrains(
  ctx: BenchContext,
  entries: readonly DrainEntry[],
  options: {
    processes: number;
    jobs: number;
    label: string;
    warmupJobs?: number;
    /** Measured rounds only: runs just before the start signal, and after the workers exited. */
    around?: DrainHooks;
  },
): Promise<number[][]> {
  const { reps } = ctx.settings;
  const rates = entries.map((): number[] => []);
  for (let rep = 0; rep <= reps; rep++) {
    for (const [i, entry] of entries.entries()) {
      const warmup = rep === 0;
      ctx.progress.step(
        `${options.label}: ${entry.adapter.name} ${entry.variant.variant}, ${warmup ? "warm-up" : `round ${rep}/${reps}`}`,
      );
      const children = await spawnChildren(
        options.processes,
        variantChildConfig(entry.adapter, ctx.url, entry.variant),
      );
      try {
        const jobs = warmup ? Math.min(options.warmupJobs ?? 2_000, options.jobs) : options.jobs;
        const hooks = warmup ? undefined : options.around;
        const run = await drainOnce(entry.adapter, children, jobs, 10_000, undefined, {
          beforeFill: hooks?.beforeFill ? () => hooks.beforeFill!(entry, i) : undefined,
          beforeStart: hooks ? () => hooks.beforeStart(entry, i) : undefined,
        });
        await exitAll(children);
        await hooks?.afterExit(entry, i, run, jobs);
        if (!warmup) rates[i]!.push(run.jobsPerSecond);
      } finally {
        await exitAll(children);
      }
    }
  }
  return rates;
}

export interface ClaimIndexStats {
  idxScan: number;
  idxTupRead: number;
  seqScan: number;
  seqTupRead: number;
}

/** Scans of the claim index; read after the worker backends exited, so their counts are flushed. */
export async function claimIndexStats(admin: pg.Pool, schema: string): Promise<ClaimIndexStats> {
  let last: ClaimIndexStats | undefined;
  for (let i = 0; i < 20; i++) {
    const client = await admin.connect();
    try {
      await client.query("SELECT pg_stat_clear_snapshot()");
      const { rows } = await client.query<ClaimIndexStats>(
        `SELECT coalesce(i.idx_scan, 0)::float8 AS "idxScan", coalesce(i.idx_tup_read, 0)::float8 AS "idxTupRead",
                coalesce(t.seq_scan, 0)::float8 AS "seqScan", coalesce(t.seq_tup_read, 0)::float8 AS "seqTupRead"
         FROM pg_stat_user_tables t
         LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid AND i.indexrelname = 'jobs_ready_idx'
         WHERE t.schemaname = $1 AND t.relname = 'jobs'`,
        [schema],
      );
      const now = rows[0]!;
      if (last && JSON.stringify(last) === JSON.stringify(now)) return now;
      last = now;
    } finally {
      client.release();
    }
    await sleep(100);
  }
  return last!;
}

/** Claim statements per job and claim-index entries read per job, for one pgwake configuration. */
async function pgwakeDrainSeries(
  ctx: BenchContext,
  processes: number,
  concurrency: number,
  label: string,
  jobsPerRun: number,
): Promise<{ rates: number[]; claimsPerJob: number[]; readPerJob: number[] }> {
  const { drain, reps } = ctx.settings;
  const adapter = await createPgwake(ctx.url, "drain");
  const rates: number[] = [];
  const claimsPerJob: number[] = [];
  const readPerJob: number[] = [];
  try {
    for (let rep = 0; rep <= reps; rep++) {
      const warmup = rep === 0;
      ctx.progress.step(`${label} ${warmup ? "warm-up" : `rep ${rep}/${reps}`}`);
      // Fresh processes for each repetition: their backends exit at the end, which flushes the
      // table and index statistics this run is measured with.
      const children = await spawnChildren(
        processes,
        drainChildConfig(adapter, ctx.url, concurrency),
      );
      try {
        const before = await claimIndexStats(ctx.admin, adapter.schema);
        const jobs = warmup ? Math.min(5_000, jobsPerRun) : jobsPerRun;
        const run = await drainOnce(adapter, children, jobs, drain.chunk);
        await exitAll(children);
        const after = await claimIndexStats(ctx.admin, adapter.schema);
        if (warmup) continue;
        rates.push(run.jobsPerSecond);
        claimsPerJob.push(run.claimQueries / jobs);
        readPerJob.push((after.idxTupRead - before.idxTupRead) / jobs);
      } finally {
        await exitAll(children);
      }
    }
  } finally {
    await adapter.drop();
  }
  return { rates, claimsPerJob, readPerJob };
}

/** Scenario 1: claim throughput of pgwake over a pre-enqueued backlog of no-op jobs. */
export async function drainScenario(ctx: BenchContext): Promise<void> {
  const { drain } = ctx.settings;
  const jobsLabel = `${drain.jobs.toLocaleString("en-US")} jobs`;
  for (const processes of drain.procs) {
    const label = `${processes} process${processes > 1 ? "es" : ""}, concurrency ${drain.concurrency}`;
    const series = await pgwakeDrainSeries(ctx, processes, drain.concurrency, label, drain.jobs);
    const kase = `${jobsLabel}, ${label}`;
    ctx.results.push(
      {
        scenario: "drain",
        system: "pgwake",
        case: kase,
        metric: "throughput",
        unit: "jobs/s",
        better: "higher",
        summary: summarize(series.rates),
        compareKey: `drain-${processes}`,
      },
      {
        scenario: "drain",
        system: "pgwake",
        case: kase,
        metric: "claim statements per job",
        unit: "stmts/job",
        better: "lower",
        summary: summarize(series.claimsPerJob),
      },
      {
        scenario: "drain",
        system: "pgwake",
        case: kase,
        metric: "claim-index entries read per job",
        unit: "rows/job",
        better: "lower",
        summary: summarize(series.readPerJob),
      },
    );
  }
  // Concurrency per process: the default (16) against higher settings, one process.
  for (const concurrency of drain.sweep) {
    if (concurrency === drain.concurrency) continue;
    const label = `1 process, concurrency ${concurrency}${concurrency === 16 ? " (default)" : ""}`;
    const series = await pgwakeDrainSeries(ctx, 1, concurrency, label, drain.sweepJobs);
    ctx.results.push({
      scenario: "drain",
      system: "pgwake",
      case: `${drain.sweepJobs.toLocaleString("en-US")} jobs, ${label}`,
      metric: "throughput",
      unit: "jobs/s",
      better: "higher",
      summary: summarize(series.rates),
    });
  }
  await syncHandlerCheck(ctx);
  await explainClaim(ctx);
}

/**
 * A handler that returns without yielding settles its job before the claim loop has finished:
 * checks that the worker still claims the next batch at once instead of waiting for its poll.
 */
async function syncHandlerCheck(ctx: BenchContext): Promise<void> {
  ctx.progress.step("synchronous no-op handler check");
  const adapter = await createPgwake(ctx.url, "sync");
  const jobs = 2_000;
  const children = await spawnChildren(1, {
    ...drainChildConfig(adapter, ctx.url, ctx.settings.drain.concurrency),
    yieldInHandler: false,
  });
  try {
    const run = await drainOnce(adapter, children, jobs, jobs, 10_000);
    ctx.results.push({
      scenario: "drain",
      system: "pgwake",
      case: `${jobs.toLocaleString("en-US")} jobs, synchronous no-op handler, 1 process (single run)`,
      metric: "throughput",
      unit: "jobs/s",
      better: "higher",
      summary: summarize([run.jobsPerSecond]),
    });
  } catch (error) {
    ctx.notes.push({
      scenario: "drain",
      text: `ENGINE BUG: with a synchronous no-op handler one worker handled only ${children[0]?.handled ?? 0} of ${jobs} jobs in 10 s (${(error as Error).message}). Jobs that settle before the claim loop's promise is cleared call requestClaim() while claimLoop is still set, so the next claim waits for the fallback poll (src/worker/worker.ts requestClaim/slotFreed).`,
    });
  } finally {
    await exitAll(children);
    await adapter.drop();
  }
}

/** The claim statement exactly as the worker sends it, captured from src/jobs/claim.ts. */
async function claimStatementText(schema: string): Promise<string> {
  let text = "";
  const recorder = {
    query: async (config: { text: string }) => {
      text = config.text;
      return {
        rows: [{ id: null, promoted: 0, promoted_run_at: null, promoted_id: null, live: true }],
      };
    },
  } as unknown as Queryable;
  await claimJobs(recorder, new SchemaSql(schema), {
    workerId: "explain",
    queue: "default",
    lanes: [{ task: "noop", limit: 1, after: { priority: SWEEP_PRIORITY, readySeq: 0 } }],
    limit: 1,
    dueAfter: { runAt: new Date(0), id: 0 },
    promoteLimit: 100,
  });
  return text;
}

/** EXPLAIN (ANALYZE, BUFFERS) of the claim statement over a backlog, stored as a note. */
async function explainClaim(ctx: BenchContext): Promise<void> {
  ctx.progress.step("EXPLAIN ANALYZE of the claim");
  const adapter = await createPgwake(ctx.url, "explain");
  try {
    await adapter.bulk(ctx.settings.drain.jobs, ctx.settings.drain.chunk);
    await adapter.vacuum();
    const text = await claimStatementText(adapter.schema);
    const client = await adapter.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("SET LOCAL plan_cache_mode = force_generic_plan");
      await registerWorker(
        client,
        new SchemaSql(adapter.schema),
        {
          id: "explain",
          host: "bench",
          pid: process.pid,
          queues: ["*"],
          tasks: ["noop"],
          concurrency: 1,
          listening: false,
        },
        60_000,
      );
      await client.query(
        `PREPARE bench_claim(text, text, timestamptz, bigint, integer, integer, text[], integer[], integer[], bigint[]) AS ${text}`,
      );
      const plans: string[] = [];
      for (const round of [
        "first claim",
        "second claim (same transaction, rows of the first now running)",
      ]) {
        const { rows } = await client.query<{ "QUERY PLAN": string }>(
          "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE bench_claim('explain', 'default', '1970-01-01', 0, 100, 100, '{noop}', '{100}', '{32767}', '{0}')",
        );
        plans.push(`-- ${round}\n${rows.map((r) => r["QUERY PLAN"]).join("\n")}`);
      }
      await client.query("ROLLBACK");
      ctx.notes.push({
        scenario: "drain",
        text: `EXPLAIN (ANALYZE, BUFFERS) of the claim (generic plan, LIMIT 100, ${ctx.settings.drain.jobs.toLocaleString("en-US")} pending jobs):\n${plans.join("\n")}`,
      });
    } finally {
      client.release();
    }
  } finally {
    await adapter.drop();
  }
}
