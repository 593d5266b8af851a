import type { SchemaSql } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { compileSchedule } from "./cron.ts";
import { planTicks } from "./plan.ts";
import { readDueSchedules } from "./sql/dueSchedules.ts";
import { fireTicks, type TickDecision } from "./sql/fireTicks.ts";
import { readNextDue } from "./sql/nextDue.ts";
import { planSchedules } from "./sql/planSchedules.ts";
import { SKIP_REASONS, type SkipReason } from "./types.ts";

/** How the schedule service paces itself; every field has a default. */
export interface RunDueSchedulesOptions {
  /** Schedules read and fired per statement, for each overlap policy (default 500). */
  batchSize?: number;
  /** Batches per call; the call returns `delayMs: 0` when it stopped with work left (default 20). */
  maxBatches?: number;
  /**
   * Ticks of overlap-`allow` schedules this close are fired now, their jobs due at the tick, so
   * a burst of schedules is written before its second comes (default 5000 ms: 10,000 schedules
   * firing in the same second took 1.2 s to write on one process of a busy 2-core machine).
   */
  lookaheadMs?: number;
  /** A tick older than this when a pass reaches it is missed: its catch-up policy decides (default 10 s). */
  missedAfterMs?: number;
  /** A tick fired more than this after its time counts as late (default 1000 ms). */
  lateAfterMs?: number;
  /** Longest `delayMs` returned, so schedules created elsewhere are seen in time (default 1000 ms). */
  maxSleepMs?: number;
  /** Shortest `delayMs` after a call that found work but could not do it (default 25 ms). */
  minSleepMs?: number;
}

export const DEFAULT_SCHEDULE_SERVICE_OPTIONS: Required<RunDueSchedulesOptions> = {
  batchSize: 500,
  maxBatches: 20,
  lookaheadMs: 5_000,
  missedAfterMs: 10_000,
  lateAfterMs: 1_000,
  maxSleepMs: 1_000,
  minSleepMs: 25,
};

/** What one call did, for logs and metrics, and when to call again. */
export interface RunDueSchedulesResult {
  /** Jobs made for ticks. */
  fired: number;
  /** Ticks skipped, by reason (a skipped range counts its ticks). */
  skipped: Record<SkipReason, number>;
  /** Fired ticks more than `lateAfterMs` after their time. */
  late: number;
  /** For each fired tick, statement time minus tick time in ms (negative: made ahead). */
  latenessMs: number[];
  /** Schedules given their first next tick. */
  planned: number;
  /** Schedules parked as invalid (expression or zone unreadable), with the reason. */
  invalid: Array<{ name: string; reason: string }>;
  /** Schedules read as due but decided by another process (or changed) in the meantime. */
  contended: number;
  /** When the next known tick is due for this service (database clock), null when none. */
  nextDueAt: Date | null;
  /** How long the caller may wait before calling again (0: call again at once). */
  delayMs: number;
}

/**
 * One pass of the schedule service, for the worker's maintenance loop. Any number of processes
 * may call it at once, with no leader: every step is one statement, and a tick makes its job
 * only in the statement that records the tick under a unique (schedule, tick) constraint.
 *
 * A pass plans schedules without a next tick, then reads due schedules in batches (through the
 * indexed next-run column), decides their ticks (`planTicks`: catch-up and overlap policies) and
 * fires each batch in one statement. It returns counters and `delayMs`, the time until the next
 * tick needs a pass (capped by `maxSleepMs`): the caller sets its timer to it.
 */
export async function runDueSchedules(
  db: Queryable,
  sql: SchemaSql,
  options: RunDueSchedulesOptions = {},
): Promise<RunDueSchedulesResult> {
  const o = { ...DEFAULT_SCHEDULE_SERVICE_OPTIONS, ...options };
  const result: RunDueSchedulesResult = {
    fired: 0,
    skipped: Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])) as Record<SkipReason, number>,
    late: 0,
    latenessMs: [],
    planned: 0,
    invalid: [],
    contended: 0,
    nextDueAt: null,
    delayMs: 0,
  };

  const plan = await planSchedules(db, sql, { limit: o.batchSize });
  result.planned += plan.planned;
  result.invalid.push(...plan.invalid);
  let workLeft = plan.planned + plan.invalid.length === o.batchSize;

  for (let batch = 0; batch < o.maxBatches; batch++) {
    const { now, rows } = await readDueSchedules(db, sql, o.lookaheadMs, o.batchSize);
    if (rows.length === 0) {
      workLeft = false;
      break;
    }
    const decisions = rows.map((row): TickDecision => {
      const base = {
        name: row.name,
        expectedNext: row.next_run_at,
        cron: row.cron,
        timeZone: row.time_zone,
      };
      try {
        const ticks = planTicks(
          {
            schedule: compileSchedule(row.cron, row.time_zone),
            nextRunAt: row.next_run_at,
            catchUp: row.catch_up,
            catchUpLimit: row.catch_up_limit,
            overlap: row.overlap,
          },
          { now, lookaheadMs: o.lookaheadMs, missedAfterMs: o.missedAfterMs },
        );
        return {
          ...base,
          ...ticks,
          ...(ticks.nextRunAt ? {} : { invalid: "the expression names no further time" }),
        };
      } catch (error) {
        // Changed by hand to something unreadable: park the row instead of retrying it forever.
        const reason = (error as Error).message;
        result.invalid.push({ name: row.name, reason });
        return { ...base, fire: [], skip: [], lastTick: null, nextRunAt: null, invalid: reason };
      }
    });
    const outcome = await fireTicks(db, sql, decisions, o.lateAfterMs);
    result.fired += outcome.fired.length;
    for (const tick of outcome.fired) {
      result.latenessMs.push(tick.lateMs);
      if (tick.lateMs > o.lateAfterMs) result.late++;
    }
    for (const skip of outcome.skipped) result.skipped[skip.reason] += skip.ticks;
    result.contended += decisions.length - outcome.decided.size;
    workLeft = rows.length >= o.batchSize;
    if (!workLeft) break;
  }

  const next = await readNextDue(db, sql);
  const candidates = [
    next.nextAllow ? next.nextAllow.getTime() - o.lookaheadMs : Number.POSITIVE_INFINITY,
    next.nextSkip ? next.nextSkip.getTime() : Number.POSITIVE_INFINITY,
  ];
  const dueAt = Math.min(...candidates);
  result.nextDueAt = Number.isFinite(dueAt) ? new Date(dueAt) : null;
  if (workLeft || next.unplanned) {
    result.delayMs = 0;
  } else {
    const wait = Math.min(dueAt - next.now.getTime(), o.maxSleepMs);
    // Due yet nothing done (the rows are being fired by another process): do not spin.
    const idle =
      result.fired === 0 &&
      result.planned === 0 &&
      Object.values(result.skipped).every((n) => n === 0);
    result.delayMs = Math.max(wait, idle ? o.minSleepMs : 0);
  }
  return result;
}
