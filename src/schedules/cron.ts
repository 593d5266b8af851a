import { Cron, type CronOptions } from "croner";
import { PgwakeError } from "../errors.ts";
import { SCHEDULE_DEFAULTS } from "./types.ts";

/**
 * Schedule math: validating a cron expression and an IANA time zone, and the ticks that follow
 * a time. Parsing and next-time computation are croner's (v11); this module fixes its options,
 * words its errors, and caches.
 *
 * Time-zone rules (croner's, with `fixedTimeRule: "no-wildcard"`; test/unit/schedules-cron.test.ts
 * proves them in Europe/Berlin, America/New_York, Australia/Sydney and Australia/Lord_Howe):
 * - A wall-clock expression — no `*`, `?` or step in its seconds, minutes and hours fields, so
 *   `30 2 * * *` or `0 9,17 * * 1-5` — names local times. A local time that happens twice (the
 *   clocks go back) fires once, at its first occurrence. A local time that does not exist (the
 *   clocks go forward) fires once, at the first moment after the gap: 02:30 becomes 03:00 on
 *   that day; several times in one gap fire once together.
 * - An interval expression — a `*` or a step in those fields, `*\/15 * * * *` or `0 * * * *` —
 *   follows real time: in a repeated hour it fires in both passes, and times inside a gap, which
 *   never happen, are skipped.
 */

/** A validated expression in a time zone; give it to `nextTick` and friends. */
export interface CronSchedule {
  /** The expression as stored: fields separated by single spaces, shortcuts in lower case. */
  readonly expression: string;
  /** The canonical IANA name of the zone. */
  readonly timeZone: string;
  readonly cron: Cron;
}

/** Shortcuts croner knows and pgwake accepts (`@reboot` names no time, so it is refused). */
export const CRON_SHORTCUTS = [
  "@yearly",
  "@annually",
  "@monthly",
  "@weekly",
  "@daily",
  "@midnight",
  "@hourly",
] as const;

const MAX_EXPRESSION_LENGTH = 256;
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;

/** An invalid expression or zone, shaped like the API's validation issues. */
export function invalidSchedule(path: "cron" | "timeZone", message: string): PgwakeError {
  return new PgwakeError("INVALID_SCHEDULE", `invalid ${path}: ${message}`, {
    details: [{ path, message, code: path === "cron" ? "invalid_cron" : "invalid_time_zone" }],
  });
}

/**
 * Trims an expression and joins its fields with single spaces, so equal schedules are stored
 * (and hashed) alike. Throws INVALID_SCHEDULE naming what is wrong; never parses the fields.
 */
export function normalizeCronExpression(input: string): string {
  const expression = input.trim().split(/\s+/).join(" ");
  if (expression === "") {
    throw invalidSchedule("cron", "the expression is empty");
  }
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    throw invalidSchedule(
      "cron",
      `the expression is longer than ${MAX_EXPRESSION_LENGTH} characters`,
    );
  }
  if (expression.startsWith("@")) {
    const shortcut = expression.toLowerCase();
    if (!(CRON_SHORTCUTS as readonly string[]).includes(shortcut)) {
      throw invalidSchedule(
        "cron",
        `unknown shortcut ${JSON.stringify(expression)}; use one of ${CRON_SHORTCUTS.join(", ")}`,
      );
    }
    return shortcut;
  }
  const fields = expression.split(" ").length;
  if (fields !== 5 && fields !== 6) {
    throw invalidSchedule(
      "cron",
      `${JSON.stringify(expression)} has ${fields} field${fields === 1 ? "" : "s"}; use 5 (minute hour day-of-month month day-of-week) or 6 (a seconds field first)`,
    );
  }
  return expression;
}

/**
 * The canonical name of an IANA time zone (`europe/berlin` → `Europe/Berlin`); throws
 * INVALID_SCHEDULE for anything else, including UTC offsets such as `+02:00`, which have no rules.
 */
export function normalizeTimeZone(input: string = SCHEDULE_DEFAULTS.timeZone): string {
  const zone = input.trim();
  if (!ZONE_NAME.test(zone)) {
    throw invalidSchedule(
      "timeZone",
      `${JSON.stringify(input.slice(0, 64))} is not an IANA time zone name (such as "Europe/Berlin" or "UTC")`,
    );
  }
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    throw invalidSchedule(
      "timeZone",
      `unknown time zone ${JSON.stringify(zone)}; use an IANA name such as "Europe/Berlin" or "UTC"`,
    );
  }
}

// Compiled expressions are pure values: one per (expression, zone) serves every schedule using it.
const compiled = new Map<string, CronSchedule>();
const MAX_COMPILED = 10_000;

/**
 * Validates an expression (5 or 6 fields, or a shortcut) in a zone (default UTC) and compiles
 * it. Throws INVALID_SCHEDULE with a message naming the field or value at fault, and for an
 * expression that names no time that ever comes (`0 0 30 2 *`).
 */
export function compileSchedule(
  expression: string,
  timeZone: string = SCHEDULE_DEFAULTS.timeZone,
): CronSchedule {
  const cacheKey = `${expression}\u0000${timeZone}`;
  const cached = compiled.get(cacheKey);
  if (cached) return cached;

  const normalized = normalizeCronExpression(expression);
  const zone = normalizeTimeZone(timeZone);
  let cron: Cron;
  try {
    cron = new Cron(normalized, cronOptions(zone));
  } catch (error) {
    throw invalidSchedule("cron", describeCronError(normalized, error));
  }
  // No year field: a valid expression recurs within one leap cycle, so "none from now" is "never".
  if (cron.nextRun(new Date()) === null) {
    throw invalidSchedule("cron", `${JSON.stringify(normalized)} names no date that ever occurs`);
  }
  const schedule: CronSchedule = { expression: normalized, timeZone: zone, cron };
  if (compiled.size >= MAX_COMPILED) compiled.clear();
  compiled.set(cacheKey, schedule);
  return schedule;
}

function cronOptions(zone: string): CronOptions {
  return {
    // UTC has no rules to look up; an offset of 0 is the same schedule, several times cheaper.
    ...(zone === "UTC" || zone === "Etc/UTC" ? { utcOffset: 0 } : { timezone: zone }),
    mode: "5-or-6-parts",
    fixedTimeRule: "no-wildcard",
    domAndDow: false,
    alternativeWeekdays: false,
    sloppyRanges: false,
    paused: true,
  };
}

function describeCronError(expression: string, error: unknown): string {
  const reason = (error instanceof Error ? error.message : String(error))
    .replace(/^CronPattern:\s*/, "")
    .replace(/^CronDate:\s*/, "");
  return `${JSON.stringify(expression)}: ${reason}`;
}

// The next tick after a time is a pure function of (expression, zone, time): schedules sharing
// an expression share the computation, which matters when thousands fire in the same second.
const nextMemo = new Map<string, number>();
const MAX_MEMO = 50_000;
const NONE = -1;

/** The first tick strictly after `after` (ticks fall on whole seconds), or null if none. */
export function nextTick(schedule: CronSchedule, after: Date): Date | null {
  const key = `${schedule.expression}\u0000${schedule.timeZone}\u0000${after.getTime()}`;
  const memo = nextMemo.get(key);
  if (memo !== undefined) return memo === NONE ? null : new Date(memo);
  const next = schedule.cron.nextRun(after);
  if (nextMemo.size >= MAX_MEMO) nextMemo.clear();
  nextMemo.set(key, next ? next.getTime() : NONE);
  return next;
}

/** Up to `count` ticks strictly after `after`, in order. */
export function nextTicks(schedule: CronSchedule, after: Date, count: number): Date[] {
  const ticks: Date[] = [];
  let cursor: Date | null = after;
  while (ticks.length < count) {
    cursor = nextTick(schedule, cursor);
    if (!cursor) break;
    ticks.push(cursor);
  }
  return ticks;
}

/** Up to `count` ticks strictly before `before`, newest first. */
export function previousTicks(schedule: CronSchedule, before: Date, count: number): Date[] {
  return count > 0 ? schedule.cron.previousRuns(count, before) : [];
}

/** The first tick at or after `at`. */
export function tickAtOrAfter(schedule: CronSchedule, at: Date): Date | null {
  return nextTick(schedule, new Date(at.getTime() - 1));
}
