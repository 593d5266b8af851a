import { describe, expect, it } from "vitest";
import {
  compileSchedule,
  nextTick,
  nextTicks,
  normalizeCronExpression,
  normalizeTimeZone,
  previousTicks,
} from "../../src/schedules/cron.ts";

const at = (iso: string) => new Date(iso);
const iso = (dates: Array<Date | null>) => dates.map((d) => d?.toISOString() ?? null);

/** The local calendar date and wall time of an instant in a zone: "2024-03-31 03:00". */
function local(date: Date, zone: string): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", {
      timeZone: zone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    })
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}

function ticksBetween(expression: string, zone: string, from: string, until: string): Date[] {
  const schedule = compileSchedule(expression, zone);
  const out: Date[] = [];
  let cursor: Date | null = at(from);
  for (;;) {
    cursor = nextTick(schedule, cursor);
    if (!cursor || cursor >= at(until)) return out;
    out.push(cursor);
  }
}

describe("daylight saving time: a wall-clock daily job runs once on both transition days", () => {
  it("Europe/Berlin, spring forward (2024-03-31, 02:00 → 03:00): 02:30 runs once, at 03:00", () => {
    const ticks = ticksBetween(
      "30 2 * * *",
      "Europe/Berlin",
      "2024-03-29T12:00:00Z",
      "2024-04-02T00:00:00Z",
    );
    expect(ticks.map((t) => local(t, "Europe/Berlin"))).toEqual([
      "2024-03-30 02:30",
      "2024-03-31 03:00",
      "2024-04-01 02:30",
    ]);
    expect(iso(ticks)).toEqual([
      "2024-03-30T01:30:00.000Z",
      "2024-03-31T01:00:00.000Z",
      "2024-04-01T00:30:00.000Z",
    ]);
  });

  it("Europe/Berlin, fall back (2024-10-27, 03:00 → 02:00): 02:30 runs once, at its first occurrence", () => {
    const ticks = ticksBetween(
      "30 2 * * *",
      "Europe/Berlin",
      "2024-10-26T12:00:00Z",
      "2024-10-29T00:00:00Z",
    );
    expect(iso(ticks)).toEqual([
      "2024-10-27T00:30:00.000Z", // 02:30 CEST; 02:30 CET (01:30Z) does not run
      "2024-10-28T01:30:00.000Z",
    ]);
    // Starting inside the repeated hour (02:10 CET) does not bring the second 02:30 back.
    expect(
      nextTick(compileSchedule("30 2 * * *", "Europe/Berlin"), at("2024-10-27T01:10:00Z")),
    ).toEqual(at("2024-10-28T01:30:00Z"));
  });

  it("America/New_York: 02:30 on 2024-03-10 runs at 03:00 EDT; 01:30 on 2024-11-03 runs once", () => {
    expect(
      iso(
        ticksBetween(
          "30 2 * * *",
          "America/New_York",
          "2024-03-09T12:00:00Z",
          "2024-03-11T12:00:00Z",
        ),
      ),
    ).toEqual(["2024-03-10T07:00:00.000Z", "2024-03-11T06:30:00.000Z"]);
    expect(
      iso(
        ticksBetween(
          "30 1 * * *",
          "America/New_York",
          "2024-11-02T12:00:00Z",
          "2024-11-04T12:00:00Z",
        ),
      ),
    ).toEqual(["2024-11-03T05:30:00.000Z", "2024-11-04T06:30:00.000Z"]);
  });

  it("Australia/Sydney (southern hemisphere): forward on 2024-10-06, back on 2024-04-07", () => {
    expect(
      iso(
        ticksBetween(
          "30 2 * * *",
          "Australia/Sydney",
          "2024-10-04T00:00:00Z",
          "2024-10-07T00:00:00Z",
        ),
      ),
    ).toEqual([
      "2024-10-04T16:30:00.000Z", // 10-05 02:30 AEST
      "2024-10-05T16:00:00.000Z", // 10-06 03:00 AEDT: 02:30 does not exist
      "2024-10-06T15:30:00.000Z",
    ]);
    expect(
      iso(
        ticksBetween(
          "30 2 * * *",
          "Australia/Sydney",
          "2024-04-05T00:00:00Z",
          "2024-04-08T00:00:00Z",
        ),
      ),
    ).toEqual([
      "2024-04-05T15:30:00.000Z",
      "2024-04-06T15:30:00.000Z", // 04-07 02:30 AEDT; its repeat, 02:30 AEST (16:30Z), does not run
      "2024-04-07T16:30:00.000Z", // 04-08 02:30 AEST
    ]);
  });

  it("Australia/Lord_Howe moves by 30 minutes: 02:15 in the gap runs at 02:30", () => {
    expect(
      ticksBetween(
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2024-10-05T00:00:00Z",
        "2024-10-07T00:00:00Z",
      ).map((t) => local(t, "Australia/Lord_Howe")),
    ).toEqual(["2024-10-06 02:30", "2024-10-07 02:15"]);
  });

  it("several wall-clock times inside one gap run once together at its end", () => {
    expect(
      ticksBetween(
        "15,45 2 * * *",
        "Europe/Berlin",
        "2024-03-31T00:00:00Z",
        "2024-04-01T02:00:00Z",
      ).map((t) => local(t, "Europe/Berlin")),
    ).toEqual(["2024-03-31 03:00", "2024-04-01 02:15", "2024-04-01 02:45"]);
  });

  it("a list of hours is a wall-clock job: 01:30 and 02:30 each run once on a fall-back day", () => {
    expect(
      ticksBetween(
        "30 1,2 * * *",
        "Europe/Berlin",
        "2024-10-26T22:00:00Z",
        "2024-10-27T23:00:00Z",
      ).map((t) => local(t, "Europe/Berlin")),
    ).toEqual(["2024-10-27 01:30", "2024-10-27 02:30"]);
  });

  it("property: every wall-clock daily job ticks exactly once per local day for a whole year", () => {
    const cases: Array<[string, string]> = [
      ["30 2 * * *", "Europe/Berlin"],
      ["0 2 * * *", "Europe/Berlin"],
      ["59 2 * * *", "Europe/Berlin"],
      ["30 1 * * *", "America/New_York"],
      ["30 2 * * *", "America/New_York"],
      ["30 2 * * *", "Australia/Sydney"],
      ["15 2 * * *", "Australia/Lord_Howe"],
      ["0 0 * * *", "America/Santiago"], // Chile moves its clocks at midnight
      ["30 0 * * *", "America/Havana"],
    ];
    for (const [expression, zone] of cases) {
      const ticks = ticksBetween(expression, zone, "2024-01-01T12:00:00Z", "2025-01-01T12:00:00Z");
      const days = ticks.map((t) => local(t, zone).slice(0, 10));
      expect(new Set(days).size, `${expression} in ${zone}`).toBe(days.length);
      // 2024-01-02 … 2025-01-01 in the zone: 366 local days (a leap year).
      expect(days.length, `${expression} in ${zone}`).toBe(366);
      for (const [i, tick] of ticks.entries()) {
        if (i > 0) expect(tick.getTime()).toBeGreaterThan(ticks[i - 1]!.getTime());
      }
    }
  });
});

describe("daylight saving time: an interval job follows real time", () => {
  it("*/30 runs in both passes of the repeated hour and skips the missing one", () => {
    const back = ticksBetween(
      "*/30 * * * *",
      "Europe/Berlin",
      "2024-10-26T23:50:00Z",
      "2024-10-27T02:10:00Z",
    );
    expect(back.map((t) => local(t, "Europe/Berlin"))).toEqual([
      "2024-10-27 02:00",
      "2024-10-27 02:30",
      "2024-10-27 02:00",
      "2024-10-27 02:30",
      "2024-10-27 03:00",
    ]);
    // Real time between ticks stays 30 minutes through the change.
    for (let i = 1; i < back.length; i++) {
      expect(back[i]!.getTime() - back[i - 1]!.getTime()).toBe(30 * 60_000);
    }
    const forward = ticksBetween(
      "*/30 * * * *",
      "Europe/Berlin",
      "2024-03-31T00:10:00Z",
      "2024-03-31T01:40:00Z",
    );
    expect(forward.map((t) => local(t, "Europe/Berlin"))).toEqual([
      "2024-03-31 01:30",
      "2024-03-31 03:00",
      "2024-03-31 03:30",
    ]);
  });

  it("@hourly in a zone keeps one tick per real hour across a fall-back night", () => {
    const ticks = ticksBetween(
      "@hourly",
      "America/New_York",
      "2024-11-03T03:30:00Z",
      "2024-11-03T08:30:00Z",
    );
    expect(iso(ticks)).toEqual([
      "2024-11-03T04:00:00.000Z",
      "2024-11-03T05:00:00.000Z", // 01:00 EDT
      "2024-11-03T06:00:00.000Z", // 01:00 EST
      "2024-11-03T07:00:00.000Z",
      "2024-11-03T08:00:00.000Z",
    ]);
  });
});

describe("calendar and fields", () => {
  it("a leap-day schedule ticks on 29 February only, in UTC and in a zone", () => {
    expect(iso(nextTicks(compileSchedule("0 0 29 2 *"), at("2023-06-01T00:00:00Z"), 3))).toEqual([
      "2024-02-29T00:00:00.000Z",
      "2028-02-29T00:00:00.000Z",
      "2032-02-29T00:00:00.000Z",
    ]);
    expect(
      iso(nextTicks(compileSchedule("0 0 29 2 *", "Europe/Berlin"), at("2024-03-01T00:00:00Z"), 1)),
    ).toEqual(["2028-02-28T23:00:00.000Z"]);
  });

  it("a seconds field (6 fields) ticks within the minute", () => {
    expect(
      iso(nextTicks(compileSchedule("*/15 * * * * *"), at("2024-01-01T00:00:07.250Z"), 4)),
    ).toEqual([
      "2024-01-01T00:00:15.000Z",
      "2024-01-01T00:00:30.000Z",
      "2024-01-01T00:00:45.000Z",
      "2024-01-01T00:01:00.000Z",
    ]);
    expect(iso(nextTicks(compileSchedule("30 0 12 * * *"), at("2024-01-01T12:00:30Z"), 1))).toEqual(
      ["2024-01-02T12:00:30.000Z"],
    );
  });

  it("next is strictly after, previous strictly before, both on whole seconds", () => {
    const everySecond = compileSchedule("* * * * * *");
    expect(nextTick(everySecond, at("2024-01-01T00:00:05Z"))).toEqual(at("2024-01-01T00:00:06Z"));
    expect(nextTick(everySecond, at("2024-01-01T00:00:05.400Z"))).toEqual(
      at("2024-01-01T00:00:06Z"),
    );
    expect(iso(previousTicks(everySecond, at("2024-01-01T00:00:05Z"), 2))).toEqual([
      "2024-01-01T00:00:04.000Z",
      "2024-01-01T00:00:03.000Z",
    ]);
  });

  it("shortcuts, in any case, mean their usual times", () => {
    const from = at("2024-05-15T10:20:00Z"); // a Wednesday
    const first = (expression: string, zone?: string) =>
      nextTick(compileSchedule(expression, zone), from)?.toISOString();
    expect(first("@hourly")).toBe("2024-05-15T11:00:00.000Z");
    expect(first("@daily")).toBe("2024-05-16T00:00:00.000Z");
    expect(first("@midnight", "Asia/Tokyo")).toBe("2024-05-15T15:00:00.000Z");
    expect(first("@weekly")).toBe("2024-05-19T00:00:00.000Z");
    expect(first("@monthly")).toBe("2024-06-01T00:00:00.000Z");
    expect(first("@yearly")).toBe("2025-01-01T00:00:00.000Z");
    expect(first("@annually")).toBe("2025-01-01T00:00:00.000Z");
    expect(normalizeCronExpression(" @HOURLY ")).toBe("@hourly");
    expect(compileSchedule("  0   3 * *  1-5 ").expression).toBe("0 3 * * 1-5");
  });

  it("time zones are stored under their canonical name", () => {
    expect(normalizeTimeZone("europe/berlin")).toBe("Europe/Berlin");
    expect(normalizeTimeZone("utc")).toBe("UTC");
    expect(normalizeTimeZone()).toBe("UTC");
    expect(compileSchedule("0 * * * *", "America/New_York").timeZone).toBe("America/New_York");
  });
});

describe("invalid input is refused with a message naming the problem", () => {
  const cronError = (expression: string) => {
    try {
      compileSchedule(expression);
    } catch (error) {
      return error as Error & { code: string; details: Array<{ path: string; code: string }> };
    }
    throw new Error(`${JSON.stringify(expression)} was accepted`);
  };

  it.each([
    ["", /the expression is empty/],
    ["   ", /the expression is empty/],
    ["* * * *", /has 4 fields; use 5 .* or 6/],
    ["* * * * * * *", /has 7 fields/],
    ["bogus", /has 1 field;/],
    ["61 * * * *", /minute: 61/],
    ["* 24 * * *", /hour: 24/],
    ["* * 0 * *", /day/i],
    ["* * * 13 *", /month/i],
    ["* * * * 8", /week/i],
    ["*/0 * * * *", /./],
    ["@reboot", /unknown shortcut "@reboot"/],
    ["@every 5m", /unknown shortcut/],
    ["0 0 30 2 *", /names no date that ever occurs/],
    ["0 0 31 4 *", /names no date that ever occurs/],
    ["x".repeat(300), /longer than 256/],
  ])("cron %j", (expression, message) => {
    const error = cronError(expression);
    expect(error.code).toBe("INVALID_SCHEDULE");
    expect(error.message).toMatch(/^invalid cron: /);
    expect(error.message).toMatch(message);
    expect(error.details[0]).toMatchObject({ path: "cron", code: "invalid_cron" });
  });

  it.each([
    ["Mars/Olympus_Mons", /unknown time zone "Mars\/Olympus_Mons"/],
    ["+02:00", /not an IANA time zone name/],
    ["", /not an IANA time zone name/],
    ["Europe/Berlin; DROP TABLE", /not an IANA time zone name/],
  ])("time zone %j", (zone, message) => {
    let error: (Error & { code?: string; details?: Array<{ path: string }> }) | undefined;
    try {
      compileSchedule("0 * * * *", zone);
    } catch (thrown) {
      error = thrown as Error;
    }
    expect(error?.code).toBe("INVALID_SCHEDULE");
    expect(error?.message).toMatch(/^invalid timeZone: /);
    expect(error?.message).toMatch(message);
    expect(error?.details?.[0]?.path).toBe("timeZone");
  });
});
