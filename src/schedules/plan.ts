import { type CronSchedule, nextTick, previousTicks, tickAtOrAfter } from "./cron.ts";
import type { CatchUpPolicy, OverlapPolicy, SkipReason } from "./types.ts";

/** A schedule's state as the service reads it. */
export interface PlanInput {
  schedule: CronSchedule;
  /** The first undecided tick (a time that is not a tick moves to the next tick). */
  nextRunAt: Date;
  catchUp: CatchUpPolicy;
  catchUpLimit: number;
  overlap: OverlapPolicy;
}

export interface PlanOptions {
  /** The database's clock. */
  now: Date;
  /** Ticks up to this far ahead are fired now, their jobs due at the tick (not with overlap skip). */
  lookaheadMs: number;
  /** A tick older than this when its pass comes is missed: the catch-up policy decides it. */
  missedAfterMs: number;
  /** Most on-time ticks fired for one schedule in one pass; the rest wait for the next pass. */
  maxCurrentTicks?: number;
}

/** Consecutive ticks skipped for one reason. */
export interface SkippedRange {
  reason: SkipReason;
  first: Date;
  last: Date;
  /** How many ticks, counted up to `MAX_COUNTED_TICKS`. */
  count: number;
}

/** What one pass does with a schedule: which ticks get jobs, which are skipped, where it resumes. */
export interface TickPlan {
  /** Ticks to make jobs for, oldest first. */
  fire: Date[];
  skip: SkippedRange[];
  /** The latest tick decided by this plan, null when none was due. */
  lastTick: Date | null;
  /** The first tick after those decided; null when the expression has no further time. */
  nextRunAt: Date | null;
}

/** Missed ticks are walked one by one up to this many; past it, counts are lower bounds. */
export const MAX_COUNTED_TICKS = 1000;
const DEFAULT_MAX_CURRENT = 100;

/**
 * Decides a schedule's due ticks. A tick is due when it is at most `now` (or `now + lookahead`
 * for overlap `allow`). Due ticks younger than `missedAfterMs` are on time and fire. Older ones
 * are missed and follow the catch-up policy:
 * - `skip`: none runs (`missed`);
 * - `once`: one job for all of them — the on-time tick when there is one, else the newest missed
 *   tick — the others are `merged`;
 * - `each`: the newest `catchUpLimit` run, older ones are `beyond_limit`.
 * With overlap `skip` only the newest due tick may fire (the others are `overlap`); whether the
 * previous job is still live is checked by the database when the pass fires.
 */
export function planTicks(input: PlanInput, options: PlanOptions): TickPlan {
  const { schedule, catchUp, overlap } = input;
  const now = options.now.getTime();
  const horizon = overlap === "skip" ? now : now + options.lookaheadMs;
  const windowStart = now - options.missedAfterMs;
  const maxCurrent = options.maxCurrentTicks ?? DEFAULT_MAX_CURRENT;

  let cursor = tickAtOrAfter(schedule, input.nextRunAt);
  if (!cursor || cursor.getTime() > horizon) {
    return { fire: [], skip: [], lastTick: null, nextRunAt: cursor };
  }

  // Missed ticks: walked up to a bound, then jumped over (a per-second schedule paused for a week).
  const missed: Date[] = [];
  let capped = false;
  while (cursor && cursor.getTime() < windowStart) {
    if (missed.length === MAX_COUNTED_TICKS) {
      capped = true;
      break;
    }
    missed.push(cursor);
    cursor = nextTick(schedule, cursor);
  }
  const windowStartDate = new Date(windowStart);
  if (capped) cursor = tickAtOrAfter(schedule, windowStartDate);
  const newestMissed = capped ? previousTicks(schedule, windowStartDate, 1)[0]! : missed.at(-1);

  const current: Date[] = [];
  while (cursor && cursor.getTime() <= horizon && current.length < maxCurrent) {
    current.push(cursor);
    cursor = nextTick(schedule, cursor);
  }

  const skip: SkippedRange[] = [];
  let fire: Date[];
  if (missed.length === 0) {
    fire = current;
  } else if (catchUp === "skip") {
    skip.push(range("missed", missed[0]!, newestMissed!, missed.length));
    fire = current;
  } else if (catchUp === "once") {
    if (current.length > 0) {
      skip.push(range("merged", missed[0]!, newestMissed!, missed.length));
      fire = current;
    } else {
      if (missed.length > 1) {
        const beforeNewest = capped
          ? previousTicks(schedule, newestMissed!, 1)[0]!
          : missed[missed.length - 2]!;
        skip.push(range("merged", missed[0]!, beforeNewest, missed.length - 1));
      }
      fire = [newestMissed!];
    }
  } else {
    const limit = input.catchUpLimit;
    const kept = capped
      ? previousTicks(schedule, windowStartDate, limit).reverse()
      : missed.slice(-limit);
    const dropped = capped ? MAX_COUNTED_TICKS : missed.length - kept.length;
    if (dropped > 0) {
      const lastDropped = capped
        ? previousTicks(schedule, kept[0]!, 1)[0]!
        : missed[missed.length - kept.length - 1]!;
      skip.push(range("beyond_limit", missed[0]!, lastDropped, dropped));
    }
    fire = [...kept, ...current];
  }

  if (overlap === "skip" && fire.length > 1) {
    skip.push(range("overlap", fire[0]!, fire[fire.length - 2]!, fire.length - 1));
    fire = [fire[fire.length - 1]!];
  }

  const lastTick = current.at(-1) ?? newestMissed ?? null;
  return { fire, skip, lastTick, nextRunAt: cursor };
}

function range(reason: SkipReason, first: Date, last: Date, count: number): SkippedRange {
  return { reason, first, last, count };
}
