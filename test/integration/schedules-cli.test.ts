import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { CommandError, UsageError } from "../../src/cli/errors.ts";
import { SchemaSql } from "../../src/db/sql.ts";
import { defineTask, TaskRegistry } from "../../src/index.ts";
import {
  SCHEDULE_CLI_RUNNERS,
  SCHEDULE_COMMANDS,
  type ScheduleCommandId,
  type SchedulesCliContext,
} from "../../src/schedules/cli.ts";
import {
  ScheduleDetailsJsonSchema,
  ScheduleJsonSchema,
  SchedulePageJsonSchema,
  TriggerResultJsonSchema,
} from "../../src/schedules/json.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

const report = defineTask({
  name: "report",
  schema: z.object({ kind: z.enum(["daily", "weekly"]) }),
  handler: () => {},
  queue: "reports",
});

describe("pgwake schedules commands", () => {
  let db: TestDb;
  let ctx: SchedulesCliContext;
  let out: string[];

  beforeAll(async () => {
    db = await createTestDb("schedules-cli");
    out = [];
    ctx = {
      db: db.pool,
      sql: new SchemaSql(db.schema),
      tasks: new TaskRegistry([report]),
      print: (text) => out.push(text),
    };
  });
  afterAll(async () => {
    await db?.close();
  });

  /** Runs a command; returns its exit code and what it printed. */
  async function run(
    id: ScheduleCommandId,
    positionals: string[],
    flags: Record<string, unknown> = {},
  ) {
    out.length = 0;
    const code = await SCHEDULE_CLI_RUNNERS[id](ctx, { positionals, flags });
    return { code, text: out.join("") };
  }

  async function refused(
    id: ScheduleCommandId,
    positionals: string[],
    flags: Record<string, unknown> = {},
  ) {
    try {
      await run(id, positionals, flags);
    } catch (error) {
      return error as Error & { exitCode: number };
    }
    throw new Error(`${id} ${positionals.join(" ")} was accepted`);
  }

  it("every command has a spec with usage and flags, and a runner", () => {
    for (const [id, spec] of Object.entries(SCHEDULE_COMMANDS)) {
      expect(spec.id).toBe(id);
      expect(spec.usage).toMatch(new RegExp(`^pgwake ${id}`));
      expect(SCHEDULE_CLI_RUNNERS[id as ScheduleCommandId]).toBeTypeOf("function");
    }
  });

  it("create refuses a bad command line naming the flag, and creates nothing", async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ task: "report" }, /--cron is required/],
      [{ cron: "@daily" }, /--task is required/],
      [{ cron: "61 * * * *", task: "report", payload: '{"kind":"daily"}' }, /--cron: .*minute: 61/],
      [
        { cron: "@daily", "time-zone": "Mars/Base", task: "report", payload: '{"kind":"daily"}' },
        /--time-zone: unknown time zone "Mars\/Base"/,
      ],
      [{ cron: "@daily", task: "report", priority: "high" }, /--priority: must be a number/],
      [
        { cron: "@daily", task: "report", "catch-up": "twice" },
        /--catch-up: must be one of skip, once, each/,
      ],
      [{ cron: "@daily", task: "report", payload: "{kind:" }, /--payload: not valid JSON/],
      [
        { cron: "@daily", task: "report", payload: '{"kind":"hourly"}' },
        /invalid payload for task "report"/,
      ],
    ];
    for (const [flags, message] of cases) {
      const error = await refused("schedules create", ["nightly"], flags);
      expect(error, JSON.stringify(flags)).toBeInstanceOf(UsageError);
      expect(error.exitCode).toBe(2);
      expect(error.message).toMatch(message);
    }
    expect(
      (await refused("schedules create", ["bad name"], { cron: "@daily", task: "report" })).message,
    ).toMatch(/not a schedule name/);
    expect(await db.query("SELECT name FROM {{schema}}.schedules")).toEqual([]);
  });

  it("create, list, get, update, pause, resume, trigger, delete — for people and with --json", async () => {
    const created = await run("schedules create", ["nightly"], {
      cron: "30 2 * * *",
      "time-zone": "Europe/Berlin",
      task: "report",
      payload: '{"kind":"daily"}',
      "catch-up": "each",
      "catch-up-limit": "5",
      overlap: "skip",
    });
    expect(created.code).toBe(0);
    expect(created.text).toMatch(
      /^created schedule nightly: next tick \d{4}-\d\d-\d\dT0[01]:30:00Z \(30 2 \* \* \* in Europe\/Berlin\)\n$/,
    );
    const json = await run("schedules create", ["weekly"], {
      cron: "@weekly",
      task: "report",
      payload: '{"kind":"weekly"}',
      paused: true,
      json: true,
    });
    expect(ScheduleJsonSchema.parse(JSON.parse(json.text))).toMatchObject({
      name: "weekly",
      paused: true,
      queue: "reports",
      definedBy: "cli",
    });
    const taken = await refused("schedules create", ["nightly"], {
      cron: "@daily",
      task: "report",
      payload: '{"kind":"daily"}',
    });
    expect(taken).toBeInstanceOf(CommandError);
    expect(taken.exitCode).toBe(1);

    const table = await run("schedules list", []);
    const lines = table.text.trimEnd().split("\n");
    expect(lines[0]).toMatch(
      /^NAME\s+CRON\s+ZONE\s+TASK\s+STATE\s+NEXT RUN\s+LAST TICK\s+FIRED\s+SKIPPED\s+LATE\s+BY$/,
    );
    expect(lines[1]).toMatch(/^nightly\s+30 2 \* \* \*\s+Europe\/Berlin\s+report\s+active\s/);
    expect(lines[2]).toMatch(/^weekly\s+@weekly\s+UTC\s+report\s+paused\s+—/);
    const paged = await run("schedules list", [], { limit: "1" });
    expect(paged.text).toMatch(/more: pgwake schedules list --after nightly\n$/);
    const listed = SchedulePageJsonSchema.parse(
      JSON.parse((await run("schedules list", [], { paused: "true", json: true })).text),
    );
    expect(listed.schedules.map((s) => s.name)).toEqual(["weekly"]);
    expect((await refused("schedules list", [], { limit: "0" })).message).toMatch(
      /--limit: must be at least 1/,
    );

    const triggered = await run("schedules trigger", ["nightly"], { "idempotency-key": "k1" });
    expect(triggered.text).toMatch(/^job \d+ \(report, queue reports\) for schedule nightly\n$/);
    const again = await run("schedules trigger", ["nightly"], {
      "idempotency-key": "k1",
      json: true,
    });
    expect(TriggerResultJsonSchema.parse(JSON.parse(again.text)).duplicate).toBe(true);

    const shown = await run("schedules get", ["nightly"], { upcoming: "2" });
    expect(shown.text).toMatch(/cron {7}30 2 \* \* \* {2}in Europe\/Berlin/);
    expect(shown.text).toMatch(/policies {3}catch-up each \(up to 5\), overlap skip/);
    expect(shown.text).toMatch(
      /next times \(UTC, local\)\n {2}\S+Z {2}\d{4}-\d\d-\d\d 02:30:00 Europe\/Berlin\n {2}\S+Z {2}\d{4}-\d\d-\d\d 02:30:00 Europe\/Berlin\n/,
    );
    expect(shown.text).toMatch(
      /TICK\s+TRIGGER\s+OUTCOME\s+TICKS\s+JOB\s+JOB STATUS\s+LATE\n\S+Z\s+manual\s+fired\s+1\s+\d+\s+pending\s+0ms/,
    );
    const details = ScheduleDetailsJsonSchema.parse(
      JSON.parse((await run("schedules get", ["nightly"], { json: true })).text),
    );
    expect(details.runs).toHaveLength(1);
    expect((await refused("schedules get", ["nobody"])).message).toBe('no schedule named "nobody"');

    expect((await refused("schedules update", ["nightly"])).message).toMatch(/nothing to change/);
    expect(
      (await refused("schedules update", ["nightly"], { cron: "0 0 30 2 *" })).message,
    ).toMatch(/--cron: .*names no date that ever occurs/);
    const updated = await run("schedules update", ["nightly"], { cron: "0 3 * * *" });
    expect(updated.text).toMatch(
      /^updated schedule nightly: next tick .*T0[12]:00:00Z \(0 3 \* \* \* in Europe\/Berlin\)\n$/,
    );
    expect((await refused("schedules update", ["nobody"], { cron: "@daily" })).exitCode).toBe(1);

    expect((await run("schedules pause", ["nightly"])).text).toBe("schedule nightly paused\n");
    expect((await run("schedules resume", ["nightly"])).text).toMatch(
      /^schedule nightly resumed: next tick /,
    );
    expect((await refused("schedules pause", ["nobody"])).exitCode).toBe(1);

    expect((await run("schedules delete", ["weekly"])).text).toBe(
      "deleted schedule weekly (its jobs stay)\n",
    );
    expect((await refused("schedules delete", ["weekly"])).message).toBe(
      'no schedule named "weekly"',
    );
  });
});
