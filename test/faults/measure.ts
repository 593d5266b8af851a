/**
 * What the fault scenarios measure in the side-effect table (`fault_executions`) and the engine's
 * own tables, and small statistics for their reports.
 */
import type { TestDb } from "../helpers/db.ts";

/** Percentiles of a sample (nearest rank), rounded to 0.1. */
export function percentiles(values: readonly number[]): {
  n: number;
  p50: number;
  p99: number;
  max: number;
} {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) =>
    sorted.length === 0
      ? Number.NaN
      : Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]! * 10) /
        10;
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: at(1) };
}

/**
 * Pairs of executions of the same job whose run times overlap: the second started before the
 * first ended (an execution that never recorded its end lasts forever). "Never concurrently".
 */
export async function overlappingExecutions(
  db: TestDb,
  filter: { sinceMs?: number } = {},
): Promise<{ jobId: number; first: string; second: string; firstEnded: string | null }[]> {
  return db.query(
    `SELECT a.job_id::int AS "jobId", a.worker_id || '#' || a.attempt AS first,
            b.worker_id || '#' || b.attempt AS second, a.finished_at::text AS "firstEnded"
     FROM {{schema}}.fault_executions a
     JOIN {{schema}}.fault_executions b
       ON b.job_id = a.job_id AND b.id > a.id
      AND b.started_at < coalesce(a.finished_at, 'infinity')
     WHERE a.started_at >= to_timestamp($1::float8 / 1000)
     ORDER BY a.job_id`,
    [filter.sinceMs ?? 0],
  );
}

/**
 * The longest time without a job start among executions matching `where` (SQL over `e`) between
 * `fromMs` and `toMs`, counting the edges of the window.
 */
export async function longestStartGap(
  db: TestDb,
  where: string,
  values: unknown[],
  fromMs: number,
  toMs: number,
): Promise<{ gapMs: number; endsAt: string | null; starts: number }> {
  const n = values.length;
  const [row] = await db.query<{ gap_ms: number; ends_at: string | null; starts: number }>(
    `WITH s AS (
       SELECT e.started_at AS t FROM {{schema}}.fault_executions e
       WHERE (${where})
         AND e.started_at BETWEEN to_timestamp($${n + 1}::float8 / 1000) AND to_timestamp($${n + 2}::float8 / 1000)
       UNION ALL SELECT to_timestamp($${n + 1}::float8 / 1000)
       UNION ALL SELECT to_timestamp($${n + 2}::float8 / 1000)
     ), g AS (SELECT t, t - lag(t) OVER (ORDER BY t) AS gap FROM s)
     SELECT coalesce(extract(epoch FROM max(gap)) * 1000, 0)::float8 AS gap_ms,
            (SELECT t::text FROM g ORDER BY gap DESC NULLS LAST LIMIT 1) AS ends_at,
            (SELECT count(*)::int FROM s) - 2 AS starts
     FROM g`,
    [...values, fromMs, toMs],
  );
  return { gapMs: Math.round(row!.gap_ms), endsAt: row!.ends_at, starts: row!.starts };
}

/** The most executions of each queue that ran at the same moment (from their start and end). */
export async function peakConcurrencyByQueue(db: TestDb): Promise<Record<string, number>> {
  const rows = await db.query<{ queue: string; peak: number }>(
    `WITH edges AS (
       SELECT queue, started_at AS t, 1 AS d FROM {{schema}}.fault_executions
       UNION ALL
       SELECT queue, coalesce(finished_at, 'infinity'), -1 FROM {{schema}}.fault_executions
     ), running AS (
       SELECT queue, sum(d) OVER (PARTITION BY queue ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS n
       FROM edges
     )
     SELECT queue, max(n)::int AS peak FROM running GROUP BY queue`,
  );
  return Object.fromEntries(rows.map((r) => [r.queue, r.peak]));
}

/** Log lines of a process at warn level or above whose message matches. */
export function warnings(
  logs: readonly { level: number; msg: string; time: number }[],
  message?: RegExp,
  sinceMs = 0,
): { level: number; msg: string; time: number }[] {
  return logs.filter(
    (l) => l.level >= 40 && l.time >= sinceMs && (!message || message.test(l.msg)),
  );
}
