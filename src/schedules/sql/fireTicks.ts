import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";
import type { SkipReason } from "../types.ts";

// Decides a batch of schedules in one statement, so no lock outlives a round trip.
// - `won`: the schedules still as the caller read them (same next tick, expression and zone, not
//   paused), locked; a row another process is firing is skipped, not waited for. This is where
//   two processes holding the same plan part: one wins the row, the other's CAS finds it moved.
// - `busy`: overlap `skip` schedules whose previous job is still in `jobs` and not finished.
// - `candidate`: the ticks to fire, minus any at or before the schedule's last decided tick or
//   already recorded in schedule_runs, so a replayed plan (a clock moved back, a next_run_at set
//   back by hand) never makes a job twice.
// - `made`: the jobs, through the public enqueue_many, each due at its tick and keyed by
//   (schedule, tick) so even an insert outside this path cannot duplicate a tick's job. The
//   concurrency key goes along (NULL until flow control; an enqueue_many without the feature
//   ignores it).
// - `fired`: the run rows, inserted in the same statement as the jobs under the unique
//   (schedule_name, tick_at) index: if one already existed the whole statement would fail and
//   its jobs with it.
// - `skipped`, `updated`: skipped ranges, overlap skips, the schedule's next tick and counters.
const FIRE_TICKS = statement(
  "schedules_fire_ticks",
  `WITH input AS (
     SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(
       name text, expected_next timestamptz, cron text, time_zone text,
       next_run_at timestamptz, last_tick timestamptz, invalid text, fire jsonb, skip jsonb)
   ), won AS (
     SELECT s.name, s.task, s.payload, s.queue, s.priority, s.max_attempts, s.timeout_ms,
            s.concurrency_key, s.overlap, s.last_tick_at AS decided_until, s.last_job_id,
            i.next_run_at AS new_next_run_at, i.last_tick, i.invalid, i.fire, i.skip
     FROM {{schema}}.schedules s
     JOIN input i ON i.name = s.name
     WHERE date_trunc('milliseconds', s.next_run_at) = i.expected_next
       AND s.cron = i.cron AND s.time_zone = i.time_zone AND NOT s.paused
     ORDER BY s.name
     FOR NO KEY UPDATE OF s SKIP LOCKED
   ), busy AS (
     SELECT w.name FROM won w
     JOIN {{schema}}.jobs j ON j.id = w.last_job_id
     WHERE w.overlap = 'skip' AND j.status NOT IN ('completed', 'failed', 'cancelled')
   ), candidate AS (
     SELECT w.name, w.task, w.payload, w.queue, w.priority, w.max_attempts, w.timeout_ms,
            w.concurrency_key, t.tick_text, t.tick_text::timestamptz AS tick,
            EXISTS (SELECT 1 FROM busy b WHERE b.name = w.name) AS blocked
     FROM won w
     CROSS JOIN LATERAL jsonb_array_elements_text(w.fire) AS t(tick_text)
     WHERE t.tick_text::timestamptz > coalesce(w.decided_until, '-infinity'::timestamptz)
       AND NOT EXISTS (
         SELECT 1 FROM {{schema}}.schedule_runs r
         WHERE r.schedule_name = w.name AND r.trigger = 'cron'
           AND r.tick_at = t.tick_text::timestamptz)
   ), to_fire AS (
     SELECT c.*, row_number() OVER (ORDER BY c.name, c.tick) AS ord
     FROM candidate c WHERE NOT c.blocked
   ), made AS (
     SELECT m.ord, (m.job).id AS job_id
     FROM {{schema}}.enqueue_many((
       SELECT coalesce(jsonb_agg(jsonb_build_object(
                'task', f.task, 'payload', f.payload, 'queue', f.queue, 'priority', f.priority,
                'run_at', f.tick, 'max_attempts', f.max_attempts, 'timeout_ms', f.timeout_ms,
                'concurrency_key', f.concurrency_key,
                'idempotency_key', 'schedule:' || f.name || ':' || f.tick_text) ORDER BY f.ord),
              '[]'::jsonb)
       FROM to_fire f)) m
   ), fired AS (
     INSERT INTO {{schema}}.schedule_runs
       (schedule_name, tick_at, trigger, outcome, last_tick_at, job_id, late_ms)
     SELECT f.name, f.tick, 'cron', 'fired', f.tick, m.job_id,
            floor(extract(epoch FROM now() - f.tick) * 1000)::bigint
     FROM to_fire f JOIN made m ON m.ord = f.ord
     RETURNING schedule_name, tick_at, job_id, late_ms
   ), skipped AS (
     INSERT INTO {{schema}}.schedule_runs
       (schedule_name, tick_at, trigger, outcome, skip_reason, ticks, last_tick_at)
     SELECT w.name, (k->>'first')::timestamptz, 'cron', 'skipped', k->>'reason',
            (k->>'count')::integer, (k->>'last')::timestamptz
     FROM won w CROSS JOIN LATERAL jsonb_array_elements(w.skip) AS k
     WHERE (k->>'first')::timestamptz > coalesce(w.decided_until, '-infinity'::timestamptz)
     UNION ALL
     SELECT c.name, c.tick, 'cron', 'skipped', 'overlap', 1, c.tick
     FROM candidate c WHERE c.blocked
     ON CONFLICT (schedule_name, tick_at) WHERE trigger = 'cron' DO NOTHING
     RETURNING schedule_name, skip_reason, ticks
   ), fired_per AS (
     SELECT schedule_name, count(*) AS n, count(*) FILTER (WHERE late_ms > $2::bigint) AS late,
            (array_agg(job_id ORDER BY tick_at DESC))[1] AS newest_job
     FROM fired GROUP BY schedule_name
   ), skipped_per AS (
     SELECT schedule_name, sum(ticks) AS n FROM skipped GROUP BY schedule_name
   ), updated AS (
     UPDATE {{schema}}.schedules s
     SET next_run_at = w.new_next_run_at,
         last_tick_at = greatest(s.last_tick_at, w.last_tick),
         last_job_id = coalesce(fp.newest_job, s.last_job_id),
         invalid_reason = w.invalid,
         ticks_fired = s.ticks_fired + coalesce(fp.n, 0),
         ticks_skipped = s.ticks_skipped + coalesce(sp.n, 0),
         ticks_late = s.ticks_late + coalesce(fp.late, 0)
     FROM won w
     LEFT JOIN fired_per fp ON fp.schedule_name = w.name
     LEFT JOIN skipped_per sp ON sp.schedule_name = w.name
     WHERE s.name = w.name
     RETURNING s.name
   )
   SELECT 'fired' AS kind, schedule_name AS name, tick_at, job_id, late_ms,
          NULL::text AS reason, 1 AS ticks
   FROM fired
   UNION ALL
   SELECT 'skipped', schedule_name, NULL, NULL, NULL, skip_reason, ticks FROM skipped
   UNION ALL
   SELECT 'decided', name, NULL, NULL, NULL, NULL, NULL FROM updated`,
);

/** What the caller decided for one schedule, from the row as it read it. */
export interface TickDecision {
  name: string;
  /** The next_run_at the caller read: the row must still hold it. */
  expectedNext: Date;
  cron: string;
  timeZone: string;
  /** Ticks to make jobs for, oldest first. */
  fire: Date[];
  skip: Array<{ reason: SkipReason; first: Date; last: Date; count: number }>;
  /** The latest tick decided (null: none, the row only moves to `nextRunAt`). */
  lastTick: Date | null;
  nextRunAt: Date | null;
  /** Why the row cannot be planned (it is then parked with next_run_at NULL). */
  invalid?: string;
}

export interface FiredTick {
  schedule: string;
  tickAt: Date;
  jobId: number;
  /** When the statement ran minus the tick (negative: the job was made ahead of its tick). */
  lateMs: number;
}

export interface FireOutcome {
  fired: FiredTick[];
  skipped: Array<{ schedule: string; reason: SkipReason; ticks: number }>;
  /** Schedules this call decided; the others were taken or changed by someone else. */
  decided: Set<string>;
}

/** Applies decisions in one statement; returns what it did. */
export async function fireTicks(
  db: Queryable,
  sql: SchemaSql,
  decisions: readonly TickDecision[],
  lateAfterMs: number,
): Promise<FireOutcome> {
  const input = decisions.map((d) => ({
    name: d.name,
    expected_next: d.expectedNext.toISOString(),
    cron: d.cron,
    time_zone: d.timeZone,
    next_run_at: d.nextRunAt?.toISOString() ?? null,
    last_tick: d.lastTick?.toISOString() ?? null,
    invalid: d.invalid ?? null,
    fire: d.fire.map((tick) => tick.toISOString()),
    skip: d.skip.map((s) => ({
      reason: s.reason,
      first: s.first.toISOString(),
      last: s.last.toISOString(),
      count: s.count,
    })),
  }));
  const { rows } = await db.query<{
    kind: "fired" | "skipped" | "decided";
    name: string;
    tick_at: Date | null;
    job_id: string | number | null;
    late_ms: string | number | null;
    reason: SkipReason | null;
    ticks: number | null;
  }>({ ...sql.bind(FIRE_TICKS), values: [JSON.stringify(input), lateAfterMs] });
  const outcome: FireOutcome = { fired: [], skipped: [], decided: new Set() };
  for (const row of rows) {
    if (row.kind === "fired") {
      outcome.fired.push({
        schedule: row.name,
        tickAt: row.tick_at!,
        jobId: Number(row.job_id),
        lateMs: Number(row.late_ms),
      });
    } else if (row.kind === "skipped") {
      outcome.skipped.push({ schedule: row.name, reason: row.reason!, ticks: row.ticks! });
    } else {
      outcome.decided.add(row.name);
    }
  }
  return outcome;
}
