import type pg from "pg";
import { quoteIdent } from "../../src/db/sql.ts";
import { type BenchChild, exitAll, spawnChildren } from "../lib/child.ts";
import { PGWAKE_DEFAULTS, variantChildConfig } from "../lib/configs.ts";
import type { BenchContext } from "../lib/context.ts";
import { formatNumber } from "../lib/format.ts";
import { nowMs, sleep, summarize } from "../lib/stats.ts";
import { createPgwake } from "../lib/systems.ts";

interface Sample {
  /** Seconds since the submissions started. */
  t: number;
  finished: number;
  live: number;
  events: number;
  /** job_history and job_events on disk, bytes. */
  diskBytes: number;
}

interface HistoryRun {
  samples: Sample[];
  submittedPerSecond: number;
  maxFinished: number;
  finishedAtEnd: number;
  maxLive: number;
  maxDiskBytes: number;
}

const SAMPLE = (q: string) => `
  SELECT (SELECT count(*) FROM ${q}.job_history)::float8 AS finished,
         (SELECT count(*) FROM ${q}.jobs)::float8 AS live,
         (SELECT count(*) FROM ${q}.job_events)::float8 AS events,
         (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
          WHERE c.relnamespace = '${q}'::regnamespace
            AND (c.relname LIKE 'job\\_history\\_%' OR c.relname LIKE 'job\\_events\\_%'))::float8
           AS disk_bytes`;

/**
 * Submits `rate` jobs per second for `seconds` (open loop: every 50 ms the jobs due by then, in
 * one enqueueMany) while one worker process with the given retention runs them and its
 * maintenance; samples the finished rows every `sampleEveryMs`.
 */
async function sustained(
  ctx: BenchContext,
  pool: pg.Pool,
  schema: string,
  enqueueMany: (n: number) => Promise<unknown>,
  child: BenchChild,
  seconds: number,
): Promise<HistoryRun> {
  const { rate, sampleEveryMs } = ctx.settings.history;
  const q = quoteIdent(schema);
  const samples: Sample[] = [];
  const t0 = nowMs();
  const end = t0 + seconds * 1_000;
  let submitted = 0;
  let stopped = false;
  const sampler = (async () => {
    while (!stopped) {
      const { rows } = await pool.query<{
        finished: number;
        live: number;
        events: number;
        disk_bytes: number;
      }>(SAMPLE(q));
      const r = rows[0]!;
      samples.push({
        t: (nowMs() - t0) / 1_000,
        finished: r.finished,
        live: r.live,
        events: r.events,
        diskBytes: r.disk_bytes,
      });
      ctx.progress.step(
        `history: ${formatNumber((nowMs() - t0) / 1_000)} s, ${formatNumber(r.finished)} finished rows, ${formatNumber(r.live)} live, ${child.handled} handled`,
      );
      await sleep(sampleEveryMs);
    }
  })();
  try {
    while (nowMs() < end) {
      const due = Math.floor(((nowMs() - t0) / 1_000) * rate);
      const n = Math.min(5_000, due - submitted);
      if (n > 0) {
        await enqueueMany(n);
        submitted += n;
      }
      await sleep(50);
    }
  } finally {
    stopped = true;
    await sampler;
  }
  const elapsed = (nowMs() - t0) / 1_000;
  return {
    samples,
    submittedPerSecond: submitted / elapsed,
    maxFinished: Math.max(...samples.map((s) => s.finished)),
    finishedAtEnd: samples.at(-1)?.finished ?? Number.NaN,
    maxLive: Math.max(...samples.map((s) => s.live)),
    maxDiskBytes: Math.max(...samples.map((s) => s.diskBytes)),
  };
}

/**
 * Scenario `history`: sustained submissions at `rate` jobs/s for `seconds` with a short
 * retention, one worker process (pgwake defaults plus `retentionMs`) running the jobs and its
 * maintenance as usual. Finished rows must stay bounded: below rate × (retention + 30 s). A
 * short warm-up run comes first; each repetition starts from empty tables.
 */
export async function historyScenario(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const { rate, seconds, retentionMs } = ctx.settings.history;
  const adapter = await createPgwake(ctx.url, "history");
  const runs: HistoryRun[] = [];
  try {
    const config = variantChildConfig(adapter, ctx.url, {
      ...PGWAKE_DEFAULTS,
      child: { pgwakeDefaults: true, pgwake: { retentionMs } },
    });
    const enqueueMany = (n: number) =>
      adapter.pgwake.enqueueMany(Array.from({ length: n }, () => ({ task: adapter.task })));
    for (let rep = 0; rep <= reps; rep++) {
      const warmup = rep === 0;
      await adapter.reset();
      const children = await spawnChildren(1, config);
      try {
        await children[0]!.request({ type: "prepare" }, "prepared");
        await children[0]!.request({ type: "start" }, "started");
        ctx.progress.step(`history: ${warmup ? "warm-up" : `rep ${rep}/${reps}`}`);
        const run = await sustained(
          ctx,
          adapter.pool,
          adapter.schema,
          enqueueMany,
          children[0]!,
          warmup ? Math.min(10, seconds) : seconds,
        );
        if (!warmup) runs.push(run);
        await children[0]!.request({ type: "stop" }, "stopped", 60_000);
      } finally {
        await exitAll(children);
      }
    }
  } finally {
    await adapter.drop();
  }
  const bound = rate * ((retentionMs + 30_000) / 1_000);
  const kase = `${rate.toLocaleString("en-US")} jobs/s for ${seconds} s, retention ${retentionMs / 1_000} s, 1 worker process (defaults)`;
  const row = (metric: string, unit: string, pick: (r: HistoryRun) => number) =>
    ctx.results.push({
      scenario: "history",
      system: "pgwake",
      case: kase,
      metric,
      unit,
      better: metric.startsWith("submitted") ? "higher" : "lower",
      summary: summarize(runs.map(pick)),
    });
  row("finished rows, most sampled", "rows", (r) => r.maxFinished);
  row("finished rows at the end", "rows", (r) => r.finishedAtEnd);
  row("history + events on disk, most sampled", "MB", (r) => r.maxDiskBytes / 2 ** 20);
  row("live jobs, most sampled", "jobs", (r) => r.maxLive);
  row("submitted", "jobs/s", (r) => r.submittedPerSecond);
  const last = runs.at(-1);
  if (last) {
    ctx.notes.push({
      scenario: "history",
      text: `finished rows over time (last repetition; t s: finished / live / events): ${last.samples
        .map((s) => `${s.t.toFixed(0)}: ${s.finished}/${s.live}/${s.events}`)
        .join(", ")}`,
    });
  }
  const worst = Math.max(...runs.map((r) => r.maxFinished));
  ctx.verdicts.push({
    issue: "#11",
    target: `sustained ${rate.toLocaleString("en-US")} jobs/s, ${retentionMs / 1_000} s retention: finished rows stay below rate × (retention + 30 s) = ${bound.toLocaleString("en-US")}`,
    measured: `most sampled ${formatNumber(summarize(runs.map((r) => r.maxFinished)).median)} (worst repetition ${formatNumber(worst)}), submitted ${formatNumber(summarize(runs.map((r) => r.submittedPerSecond)).median)} jobs/s, live jobs at most ${formatNumber(Math.max(...runs.map((r) => r.maxLive)))} (the worker kept up if that stays small)`,
    met: runs.length > 0 ? worst < bound : null,
  });
}
