import { describe, expect, it } from "vitest";
import { compileSchedule } from "../../src/schedules/cron.ts";
import { MAX_COUNTED_TICKS, type PlanInput, planTicks } from "../../src/schedules/plan.ts";
import type { CatchUpPolicy, OverlapPolicy } from "../../src/schedules/types.ts";

const at = (iso: string) => new Date(iso);
const iso = (dates: Date[]) => dates.map((d) => d.toISOString());

function input(
  expression: string,
  nextRunAt: string,
  policies: {
    catchUp?: CatchUpPolicy;
    catchUpLimit?: number;
    overlap?: OverlapPolicy;
    zone?: string;
  } = {},
): PlanInput {
  return {
    schedule: compileSchedule(expression, policies.zone),
    nextRunAt: at(nextRunAt),
    catchUp: policies.catchUp ?? "once",
    catchUpLimit: policies.catchUpLimit ?? 100,
    overlap: policies.overlap ?? "allow",
  };
}

const options = (
  now: string,
  overrides: { lookaheadMs?: number; maxCurrentTicks?: number } = {},
) => ({
  now: at(now),
  lookaheadMs: overrides.lookaheadMs ?? 2_000,
  missedAfterMs: 10_000,
  ...(overrides.maxCurrentTicks !== undefined
    ? { maxCurrentTicks: overrides.maxCurrentTicks }
    : {}),
});

/** Every whole second from `from` to `to` inclusive, as ISO strings. */
function seconds(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = at(from).getTime(); t <= at(to).getTime(); t += 1000)
    out.push(new Date(t).toISOString());
  return out;
}

describe("on-time ticks", () => {
  it("a due tick fires and the schedule moves to the next one", () => {
    const plan = planTicks(
      input("* * * * *", "2024-01-01T12:00:00Z"),
      options("2024-01-01T12:00:00.200Z"),
    );
    expect(iso(plan.fire)).toEqual(["2024-01-01T12:00:00.000Z"]);
    expect(plan.skip).toEqual([]);
    expect(plan.lastTick).toEqual(at("2024-01-01T12:00:00Z"));
    expect(plan.nextRunAt).toEqual(at("2024-01-01T12:01:00Z"));
  });

  it("a tick within the lookahead fires ahead with overlap allow, not with overlap skip", () => {
    const ahead = planTicks(
      input("* * * * *", "2024-01-01T12:01:00Z"),
      options("2024-01-01T12:00:58.500Z"),
    );
    expect(iso(ahead.fire)).toEqual(["2024-01-01T12:01:00.000Z"]);
    expect(ahead.nextRunAt).toEqual(at("2024-01-01T12:02:00Z"));

    const skip = planTicks(
      input("* * * * *", "2024-01-01T12:01:00Z", { overlap: "skip" }),
      options("2024-01-01T12:00:58.500Z"),
    );
    expect(skip).toEqual({
      fire: [],
      skip: [],
      lastTick: null,
      nextRunAt: at("2024-01-01T12:01:00Z"),
    });
  });

  it("nothing is due before the tick minus the lookahead", () => {
    const plan = planTicks(
      input("* * * * *", "2024-01-01T12:05:00Z"),
      options("2024-01-01T12:00:00Z"),
    );
    expect(plan).toEqual({
      fire: [],
      skip: [],
      lastTick: null,
      nextRunAt: at("2024-01-01T12:05:00Z"),
    });
  });

  it("a stored time that is not a tick counts from the next tick", () => {
    const due = planTicks(
      input("* * * * *", "2024-01-01T12:00:30Z"),
      options("2024-01-01T12:00:59Z"),
    );
    expect(iso(due.fire)).toEqual(["2024-01-01T12:01:00.000Z"]);
    const notYet = planTicks(
      input("* * * * *", "2024-01-01T12:00:30Z"),
      options("2024-01-01T12:00:40Z"),
    );
    expect(notYet.fire).toEqual([]);
    expect(notYet.nextRunAt).toEqual(at("2024-01-01T12:01:00Z"));
  });

  it("at most maxCurrentTicks fire in one pass; the rest stay due", () => {
    const plan = planTicks(
      input("* * * * * *", "2024-01-01T12:00:00Z"),
      options("2024-01-01T12:00:00.300Z", { lookaheadMs: 10_000, maxCurrentTicks: 3 }),
    );
    expect(iso(plan.fire)).toEqual(seconds("2024-01-01T12:00:00Z", "2024-01-01T12:00:02Z"));
    expect(plan.nextRunAt).toEqual(at("2024-01-01T12:00:03Z"));
  });
});

describe("catch-up after a minute of downtime on a per-second schedule", () => {
  // Down from 12:00:00 to 12:01:00.300: ticks up to 12:00:50 are more than 10 s old (missed),
  // 12:00:51 … 12:01:00 are on time, 12:01:01 and 12:01:02 are within the 2 s lookahead.
  const now = "2024-01-01T12:01:00.300Z";
  const current = seconds("2024-01-01T12:00:51Z", "2024-01-01T12:01:02Z");

  it("skip: the missed ticks are recorded as missed, the on-time ones fire", () => {
    const plan = planTicks(
      input("* * * * * *", "2024-01-01T12:00:00Z", { catchUp: "skip" }),
      options(now),
    );
    expect(iso(plan.fire)).toEqual(current);
    expect(plan.skip).toEqual([
      {
        reason: "missed",
        first: at("2024-01-01T12:00:00Z"),
        last: at("2024-01-01T12:00:50Z"),
        count: 51,
      },
    ]);
    expect(plan.lastTick).toEqual(at("2024-01-01T12:01:02Z"));
    expect(plan.nextRunAt).toEqual(at("2024-01-01T12:01:03Z"));
  });

  it("once: the on-time run stands for the missed ones, which are merged", () => {
    const plan = planTicks(
      input("* * * * * *", "2024-01-01T12:00:00Z", { catchUp: "once" }),
      options(now),
    );
    expect(iso(plan.fire)).toEqual(current);
    expect(plan.skip).toEqual([
      {
        reason: "merged",
        first: at("2024-01-01T12:00:00Z"),
        last: at("2024-01-01T12:00:50Z"),
        count: 51,
      },
    ]);
  });

  it("each: the newest missed ticks up to the limit run, older ones are beyond the limit", () => {
    const plan = planTicks(
      input("* * * * * *", "2024-01-01T12:00:00Z", { catchUp: "each", catchUpLimit: 5 }),
      options(now),
    );
    expect(iso(plan.fire)).toEqual(seconds("2024-01-01T12:00:46Z", "2024-01-01T12:01:02Z"));
    expect(plan.skip).toEqual([
      {
        reason: "beyond_limit",
        first: at("2024-01-01T12:00:00Z"),
        last: at("2024-01-01T12:00:45Z"),
        count: 46,
      },
    ]);
    const all = planTicks(
      input("* * * * * *", "2024-01-01T12:00:00Z", { catchUp: "each", catchUpLimit: 100 }),
      options(now),
    );
    expect(iso(all.fire)).toEqual(seconds("2024-01-01T12:00:00Z", "2024-01-01T12:01:02Z"));
    expect(all.skip).toEqual([]);
  });

  it("overlap skip: only the newest due tick may fire, the others are recorded as overlap", () => {
    const plan = planTicks(
      input("* * * * * *", "2024-01-01T12:00:00Z", { catchUp: "each", overlap: "skip" }),
      options(now),
    );
    // No lookahead with overlap skip: the newest due tick is 12:01:00.
    expect(iso(plan.fire)).toEqual(["2024-01-01T12:01:00.000Z"]);
    expect(plan.skip).toEqual([
      {
        reason: "overlap",
        first: at("2024-01-01T12:00:00Z"),
        last: at("2024-01-01T12:00:59Z"),
        count: 60,
      },
    ]);
    expect(plan.nextRunAt).toEqual(at("2024-01-01T12:01:01Z"));
  });
});

describe("catch-up when no tick is on time (a per-minute schedule, 3.5 minutes down)", () => {
  const now = "2024-01-01T12:03:30Z";

  it("once: one job, for the newest missed tick; the others are merged", () => {
    const plan = planTicks(
      input("* * * * *", "2024-01-01T12:00:00Z", { catchUp: "once" }),
      options(now),
    );
    expect(iso(plan.fire)).toEqual(["2024-01-01T12:03:00.000Z"]);
    expect(plan.skip).toEqual([
      {
        reason: "merged",
        first: at("2024-01-01T12:00:00Z"),
        last: at("2024-01-01T12:02:00Z"),
        count: 3,
      },
    ]);
    expect(plan.lastTick).toEqual(at("2024-01-01T12:03:00Z"));
    expect(plan.nextRunAt).toEqual(at("2024-01-01T12:04:00Z"));
  });

  it("skip: none runs", () => {
    const plan = planTicks(
      input("* * * * *", "2024-01-01T12:00:00Z", { catchUp: "skip" }),
      options(now),
    );
    expect(plan.fire).toEqual([]);
    expect(plan.skip).toEqual([
      {
        reason: "missed",
        first: at("2024-01-01T12:00:00Z"),
        last: at("2024-01-01T12:03:00Z"),
        count: 4,
      },
    ]);
    expect(plan.lastTick).toEqual(at("2024-01-01T12:03:00Z"));
    expect(plan.nextRunAt).toEqual(at("2024-01-01T12:04:00Z"));
  });

  it("each with a limit of 2: the two newest run", () => {
    const plan = planTicks(
      input("* * * * *", "2024-01-01T12:00:00Z", { catchUp: "each", catchUpLimit: 2 }),
      options(now),
    );
    expect(iso(plan.fire)).toEqual(["2024-01-01T12:02:00.000Z", "2024-01-01T12:03:00.000Z"]);
    expect(plan.skip).toEqual([
      {
        reason: "beyond_limit",
        first: at("2024-01-01T12:00:00Z"),
        last: at("2024-01-01T12:01:00Z"),
        count: 2,
      },
    ]);
  });

  it("a daily wall-clock job missed across a spring-forward day catches up in real time", () => {
    const plan = planTicks(
      input("30 2 * * *", "2024-03-30T01:30:00Z", { catchUp: "each", zone: "Europe/Berlin" }),
      options("2024-04-01T12:00:00Z"),
    );
    expect(iso(plan.fire)).toEqual([
      "2024-03-30T01:30:00.000Z",
      "2024-03-31T01:00:00.000Z",
      "2024-04-01T00:30:00.000Z",
    ]);
    expect(plan.nextRunAt).toEqual(at("2024-04-02T00:30:00Z"));
  });
});

describe("a day of missed per-second ticks is bounded work", () => {
  const now = "2024-01-02T00:00:00.500Z";
  const zeroLookahead = { lookaheadMs: 0 };

  it("each: the newest limit missed ticks and the on-time ones fire; the count stops at the bound", () => {
    const plan = planTicks(
      input("* * * * * *", "2024-01-01T00:00:00Z", { catchUp: "each", catchUpLimit: 100 }),
      options(now, zeroLookahead),
    );
    expect(iso(plan.fire)).toEqual(seconds("2024-01-01T23:58:11Z", "2024-01-02T00:00:00Z"));
    expect(plan.skip).toEqual([
      {
        reason: "beyond_limit",
        first: at("2024-01-01T00:00:00Z"),
        last: at("2024-01-01T23:58:10Z"),
        count: MAX_COUNTED_TICKS,
      },
    ]);
    expect(plan.nextRunAt).toEqual(at("2024-01-02T00:00:01Z"));
  });

  it("once: the on-time ticks fire and every missed tick is merged", () => {
    const plan = planTicks(
      input("* * * * * *", "2024-01-01T00:00:00Z", { catchUp: "once" }),
      options(now, zeroLookahead),
    );
    expect(iso(plan.fire)).toEqual(seconds("2024-01-01T23:59:51Z", "2024-01-02T00:00:00Z"));
    expect(plan.skip).toEqual([
      {
        reason: "merged",
        first: at("2024-01-01T00:00:00Z"),
        last: at("2024-01-01T23:59:50Z"),
        count: MAX_COUNTED_TICKS,
      },
    ]);
  });
});
