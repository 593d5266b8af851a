import { z } from "zod";
import { CommandError, EXIT, UsageError } from "../cli/errors.ts";
import { oneLine, renderTable, shortDuration, shortTime } from "../cli/table.ts";
import type { SchemaSql } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { PgwakeError } from "../errors.ts";
import type { TaskRegistry } from "../tasks.ts";
import type { ScheduleSpec, TaskKnowledge } from "./definition.ts";
import { scheduleDetailsJson, scheduleJson, schedulePageJson, triggerResultJson } from "./json.ts";
import {
  createSchedule,
  deleteSchedule,
  getSchedule,
  listSchedules,
  pauseSchedule,
  resumeSchedule,
  ScheduleConflictError,
  triggerSchedule,
  updateSchedule,
} from "./store.ts";
import {
  CATCH_UP_LIMIT_RANGE,
  CATCH_UP_POLICIES,
  OVERLAP_POLICIES,
  SCHEDULE_DEFAULTS,
  SCHEDULE_SOURCES,
  type Schedule,
} from "./types.ts";

// The logic of `pgwake schedules list|get|create|update|delete|pause|resume|trigger`: each command
// takes its parsed positionals and flags and a database handle, prints a table for people or JSON
// with --json, and throws UsageError (exit 2) for a bad command line or CommandError (exit 1)
// for a refusal (unknown schedule, conflict). src/cli registers the specs and calls the runners.

/** A flag of a schedules command, in the shape of src/cli/args.ts `ExtraFlag`. */
export interface ScheduleCliFlag {
  name: string;
  type: "string" | "boolean";
  placeholder?: string;
  description: string;
}

/** A schedules command, in the shape of src/cli/args.ts `CommandSpec` (minus `command`). */
export interface ScheduleCommandSpec {
  id: ScheduleCommandId;
  summary: string;
  usage: string;
  description: string;
  extra: readonly ScheduleCliFlag[];
  minPositionals: number;
  maxPositionals: number;
}

export type ScheduleCommandId =
  | "schedules list"
  | "schedules get"
  | "schedules create"
  | "schedules update"
  | "schedules delete"
  | "schedules pause"
  | "schedules resume"
  | "schedules trigger";

/** What a schedules command needs: the database, the schema, known tasks, where to print. */
export interface SchedulesCliContext {
  db: Queryable;
  sql: SchemaSql;
  /**
   * What this process knows about tasks (e.g. `{ prepareJob: (job) => pgwake.prepare(job) }`):
   * payloads are checked and task defaults applied, as for an enqueue.
   */
  knowledge?: TaskKnowledge;
  /** Known tasks, when `knowledge` is not given: payload schemas and task defaults. */
  tasks?: TaskRegistry;
  print: (text: string) => void;
}

/** A command line as parsed: positionals after the subcommand, and flag values by name. */
export interface SchedulesCliArgs {
  positionals: readonly string[];
  flags: Readonly<Record<string, unknown>>;
}

const JSON_FLAG: ScheduleCliFlag = {
  name: "json",
  type: "boolean",
  description: "Print JSON for scripts instead of a table.",
};

const DEFINITION_FLAGS: readonly ScheduleCliFlag[] = [
  {
    name: "cron",
    type: "string",
    placeholder: "expr",
    description: "5 fields, 6 with seconds first, or @hourly/@daily/@weekly/@monthly/@yearly.",
  },
  {
    name: "time-zone",
    type: "string",
    placeholder: "zone",
    description: `IANA time zone the expression is read in (default ${SCHEDULE_DEFAULTS.timeZone}).`,
  },
  { name: "task", type: "string", placeholder: "name", description: "Task of the jobs it makes." },
  {
    name: "payload",
    type: "string",
    placeholder: "json",
    description: "Payload of every job (JSON).",
  },
  { name: "queue", type: "string", placeholder: "name", description: "Queue of its jobs." },
  { name: "priority", type: "string", placeholder: "n", description: "Priority of its jobs." },
  { name: "max-attempts", type: "string", placeholder: "n", description: "Attempts per job." },
  {
    name: "timeout-ms",
    type: "string",
    placeholder: "ms",
    description: "Time limit of an attempt.",
  },
  {
    name: "catch-up",
    type: "string",
    placeholder: "policy",
    description: `Ticks missed while down or paused: ${CATCH_UP_POLICIES.join(", ")} (default ${SCHEDULE_DEFAULTS.catchUp}).`,
  },
  {
    name: "catch-up-limit",
    type: "string",
    placeholder: "n",
    description: `With --catch-up each: most missed ticks run (default ${SCHEDULE_DEFAULTS.catchUpLimit}).`,
  },
  {
    name: "overlap",
    type: "string",
    placeholder: "policy",
    description: `${OVERLAP_POLICIES.join(" or ")}: skip a tick while the previous job is unfinished (default ${SCHEDULE_DEFAULTS.overlap}).`,
  },
];

/** The schedules commands, for registration in src/cli/args.ts. */
export const SCHEDULE_COMMANDS: Record<ScheduleCommandId, ScheduleCommandSpec> = {
  "schedules list": {
    id: "schedules list",
    summary: "list schedules with their next and last ticks",
    usage:
      "pgwake schedules list [--task t] [--paused true|false] [--limit n] [--after name] [--json]",
    description:
      "One page of schedules in name order; the last line says how to get the next page.",
    extra: [
      { name: "task", type: "string", placeholder: "name", description: "Only this task." },
      {
        name: "paused",
        type: "string",
        placeholder: "true|false",
        description: "Only paused or running ones.",
      },
      {
        name: "defined-by",
        type: "string",
        placeholder: "source",
        description: `Only those defined by ${SCHEDULE_SOURCES.join(", ")}.`,
      },
      {
        name: "limit",
        type: "string",
        placeholder: "n",
        description: "Schedules per page, 1 to 500 (default 50).",
      },
      {
        name: "after",
        type: "string",
        placeholder: "name",
        description: "Names after this one (the next page).",
      },
      JSON_FLAG,
    ],
    minPositionals: 0,
    maxPositionals: 0,
  },
  "schedules get": {
    id: "schedules get",
    summary: "show a schedule, its next times and its newest runs with their jobs",
    usage: "pgwake schedules get <name> [--runs n] [--upcoming n] [--json]",
    description:
      "Times are UTC, with the local time in the schedule's zone next to the next times.",
    extra: [
      {
        name: "runs",
        type: "string",
        placeholder: "n",
        description: "Newest runs shown, 0 to 100 (default 10).",
      },
      {
        name: "upcoming",
        type: "string",
        placeholder: "n",
        description: "Next times shown, 0 to 100 (default 5).",
      },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "schedules create": {
    id: "schedules create",
    summary: "create a schedule",
    usage: "pgwake schedules create <name> --cron <expr> --task <name> [flags]",
    description:
      "Nothing is created when a flag is invalid. Example:\n" +
      "  pgwake schedules create nightly --cron '30 2 * * *' --time-zone Europe/Berlin --task report",
    extra: [
      ...DEFINITION_FLAGS,
      { name: "paused", type: "boolean", description: "Create it paused." },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "schedules update": {
    id: "schedules update",
    summary: "change a schedule's settings",
    usage: "pgwake schedules update <name> [--cron expr] [--time-zone zone] [...] [--json]",
    description:
      "Flags left out keep their value. A new expression or zone starts at its next tick after now.\n" +
      "A schedule defined in code can only be paused or resumed here.",
    extra: [...DEFINITION_FLAGS, JSON_FLAG],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "schedules delete": {
    id: "schedules delete",
    summary: "delete a schedule and its run records (its jobs stay)",
    usage: "pgwake schedules delete <name> [--force] [--json]",
    description:
      "A schedule defined in code is refused unless --force (the next worker start recreates it).",
    extra: [
      { name: "force", type: "boolean", description: "Delete a code-defined schedule too." },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "schedules pause": {
    id: "schedules pause",
    summary: "pause a schedule",
    usage: "pgwake schedules pause <name> [--json]",
    description:
      "No tick fires until it is resumed; then its catch-up policy decides the missed ones.",
    extra: [JSON_FLAG],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "schedules resume": {
    id: "schedules resume",
    summary: "resume a paused schedule",
    usage: "pgwake schedules resume <name> [--json]",
    description: "Ticks missed while paused follow the schedule's catch-up policy.",
    extra: [JSON_FLAG],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "schedules trigger": {
    id: "schedules trigger",
    summary: "make the schedule's job now",
    usage: "pgwake schedules trigger <name> [--idempotency-key key] [--json]",
    description: "Also when paused, whatever its overlap policy; recorded as a manual run.",
    extra: [
      {
        name: "idempotency-key",
        type: "string",
        placeholder: "key",
        description: "A repeated trigger with the same key returns the first one's job.",
      },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
};

const FLAG_OF: Record<string, string> = {
  cron: "--cron",
  timeZone: "--time-zone",
  task: "--task",
  payload: "--payload",
  queue: "--queue",
  priority: "--priority",
  maxAttempts: "--max-attempts",
  timeoutMs: "--timeout-ms",
  catchUp: "--catch-up",
  catchUpLimit: "--catch-up-limit",
  overlap: "--overlap",
  name: "<name>",
};

const int = (min: number, max: number) =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be at least ${min}` })
    .max(max, { error: `must be at most ${max}` })
    .optional();

const DefinitionFlagsSchema = z.object({
  cron: z.string().optional(),
  "time-zone": z.string().optional(),
  task: z.string().optional(),
  payload: z.string().optional(),
  queue: z.string().optional(),
  priority: int(-1000, 1000),
  "max-attempts": int(1, 1000),
  "timeout-ms": int(1, 2_147_483_647),
  "catch-up": z
    .enum(CATCH_UP_POLICIES, { error: `must be one of ${CATCH_UP_POLICIES.join(", ")}` })
    .optional(),
  "catch-up-limit": int(CATCH_UP_LIMIT_RANGE.min, CATCH_UP_LIMIT_RANGE.max),
  overlap: z
    .enum(OVERLAP_POLICIES, { error: `must be one of ${OVERLAP_POLICIES.join(", ")}` })
    .optional(),
});

/** The settings given as flags (only those given), checked for form; the store checks the rest. */
function definitionFlags(flags: Readonly<Record<string, unknown>>): Partial<ScheduleSpec> {
  const parsed = DefinitionFlagsSchema.safeParse(flags);
  if (!parsed.success) {
    throw new UsageError(
      parsed.error.issues.map((issue) => `--${String(issue.path[0])}: ${issue.message}`).join("; "),
    );
  }
  const f = parsed.data;
  let payload: unknown;
  if (f.payload !== undefined) {
    try {
      payload = JSON.parse(f.payload);
    } catch (error) {
      throw new UsageError(`--payload: not valid JSON (${(error as Error).message})`);
    }
  }
  const spec: Partial<ScheduleSpec> = {};
  if (f.cron !== undefined) spec.cron = f.cron;
  if (f["time-zone"] !== undefined) spec.timeZone = f["time-zone"];
  if (f.task !== undefined) spec.task = f.task;
  if (payload !== undefined) spec.payload = payload;
  if (f.queue !== undefined) spec.queue = f.queue;
  if (f.priority !== undefined) spec.priority = f.priority;
  if (f["max-attempts"] !== undefined) spec.maxAttempts = f["max-attempts"];
  if (f["timeout-ms"] !== undefined) spec.timeoutMs = f["timeout-ms"];
  if (f["catch-up"] !== undefined) spec.catchUp = f["catch-up"];
  if (f["catch-up-limit"] !== undefined) spec.catchUpLimit = f["catch-up-limit"];
  if (f.overlap !== undefined) spec.overlap = f.overlap;
  return spec;
}

/** The store's refusals as the CLI's errors: bad input exits 2, a conflict exits 1. */
async function cliCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof ScheduleConflictError) throw new CommandError(error.message);
    if (
      error instanceof PgwakeError &&
      (error.code === "INVALID_SCHEDULE" || error.code === "INVALID_OPTIONS")
    ) {
      const issues = error.details as Array<{ path: string; message: string }> | undefined;
      if (Array.isArray(issues) && issues.length > 0) {
        throw new UsageError(
          issues.map((i) => `${FLAG_OF[i.path.split(".")[0]!] ?? i.path}: ${i.message}`).join("; "),
        );
      }
      throw new UsageError(error.message);
    }
    if (
      error instanceof PgwakeError &&
      (error.code === "INVALID_PAYLOAD" || error.code === "UNKNOWN_TASK")
    ) {
      const details = error.details as Array<{ path: string; message: string }> | undefined;
      const where = Array.isArray(details)
        ? details.map((d) => ` ${d.path}: ${d.message}`).join(";")
        : "";
      throw new UsageError(`${error.message}${where}`);
    }
    throw error;
  }
}

function knowledgeOf(ctx: SchedulesCliContext): TaskKnowledge {
  return ctx.knowledge ?? (ctx.tasks ? { tasks: ctx.tasks } : {});
}

function nameOf(args: SchedulesCliArgs): string {
  const [name] = args.positionals;
  if (!name || !/^[A-Za-z0-9_.:-]{1,128}$/.test(name)) {
    throw new UsageError(
      `not a schedule name: ${JSON.stringify(name ?? "")} (1-128 of A-Z a-z 0-9 _ . : -)`,
    );
  }
  return name;
}

function found<T>(name: string, value: T | null): T {
  if (value === null) throw new CommandError(`no schedule named "${name}"`);
  return value;
}

const printJson = (ctx: SchedulesCliContext, value: unknown) =>
  ctx.print(`${JSON.stringify(value, null, 2)}\n`);

function state(schedule: Schedule): string {
  if (schedule.invalidReason !== null) return "invalid";
  return schedule.paused ? "paused" : "active";
}

/** Rows of a schedule table. */
export function scheduleTable(schedules: readonly Schedule[]): string {
  return renderTable(
    [
      "NAME",
      "CRON",
      "ZONE",
      "TASK",
      "STATE",
      "NEXT RUN",
      "LAST TICK",
      "FIRED",
      "SKIPPED",
      "LATE",
      "BY",
    ],
    schedules.map((s) => [
      s.name,
      s.cron,
      s.timeZone,
      s.task,
      state(s),
      shortTime(s.nextRunAt),
      shortTime(s.lastTickAt),
      String(s.ticksFired),
      String(s.ticksSkipped),
      String(s.ticksLate),
      s.definedBy,
    ]),
  );
}

/** `pgwake schedules list`. */
export async function schedulesList(
  ctx: SchedulesCliContext,
  args: SchedulesCliArgs,
): Promise<number> {
  const parsed = z
    .object({
      task: z.string().optional(),
      paused: z.enum(["true", "false"], { error: "must be true or false" }).optional(),
      "defined-by": z
        .enum(SCHEDULE_SOURCES, { error: `must be one of ${SCHEDULE_SOURCES.join(", ")}` })
        .optional(),
      limit: int(1, 500),
      after: z.string().optional(),
    })
    .safeParse(args.flags);
  if (!parsed.success) {
    throw new UsageError(
      parsed.error.issues.map((i) => `--${String(i.path[0])}: ${i.message}`).join("; "),
    );
  }
  const f = parsed.data;
  const page = await listSchedules(ctx.db, ctx.sql, {
    ...(f.task !== undefined ? { task: f.task } : {}),
    ...(f.paused !== undefined ? { paused: f.paused === "true" } : {}),
    ...(f["defined-by"] !== undefined ? { definedBy: f["defined-by"] } : {}),
    ...(f.limit !== undefined ? { limit: f.limit } : {}),
    ...(f.after !== undefined ? { after: f.after } : {}),
  });
  if (args.flags.json) {
    printJson(ctx, schedulePageJson(page));
    return EXIT.ok;
  }
  ctx.print(page.schedules.length === 0 ? "no schedules\n" : scheduleTable(page.schedules));
  if (page.nextCursor !== null)
    ctx.print(`more: pgwake schedules list --after ${page.nextCursor}\n`);
  return EXIT.ok;
}

/** `pgwake schedules get <name>`. */
export async function schedulesGet(
  ctx: SchedulesCliContext,
  args: SchedulesCliArgs,
): Promise<number> {
  const name = nameOf(args);
  const parsed = z.object({ runs: int(0, 100), upcoming: int(0, 100) }).safeParse(args.flags);
  if (!parsed.success) {
    throw new UsageError(
      parsed.error.issues.map((i) => `--${String(i.path[0])}: ${i.message}`).join("; "),
    );
  }
  const details = found(
    name,
    await getSchedule(ctx.db, ctx.sql, name, {
      ...(parsed.data.runs !== undefined ? { runs: parsed.data.runs } : {}),
      ...(parsed.data.upcoming !== undefined ? { upcoming: parsed.data.upcoming } : {}),
    }),
  );
  if (args.flags.json) {
    printJson(ctx, scheduleDetailsJson(details));
    return EXIT.ok;
  }
  const s = details.schedule;
  const local = new Intl.DateTimeFormat("sv-SE", {
    timeZone: s.timeZone,
    dateStyle: "short",
    timeStyle: "medium",
  });
  const lines = [
    `schedule   ${s.name} (${state(s)}, defined by ${s.definedBy}${s.owner ? `, owner ${s.owner}` : ""})`,
    `cron       ${s.cron}  in ${s.timeZone}`,
    `task       ${s.task}  payload ${oneLine(s.payload)}`,
    `job        queue ${s.queue ?? "(default)"}, priority ${s.priority ?? "(default)"}, max attempts ${s.maxAttempts ?? "(default)"}, timeout ${s.timeoutMs === null ? "(default)" : `${s.timeoutMs} ms`}`,
    `policies   catch-up ${s.catchUp}${s.catchUp === "each" ? ` (up to ${s.catchUpLimit})` : ""}, overlap ${s.overlap}`,
    `next tick  ${shortTime(s.nextRunAt)}    last tick ${shortTime(s.lastTickAt)}`,
    `ticks      ${s.ticksFired} fired, ${s.ticksSkipped} skipped, ${s.ticksLate} late`,
    ...(s.invalidReason ? [`invalid    ${s.invalidReason}`] : []),
    "",
    "next times (UTC, local)",
    ...(details.upcoming.length === 0
      ? ["  none"]
      : details.upcoming.map((t) => `  ${shortTime(t)}  ${local.format(t)} ${s.timeZone}`)),
    "",
  ];
  ctx.print(`${lines.join("\n")}\n`);
  if (details.runs.length === 0) {
    ctx.print("no runs yet\n");
  } else {
    ctx.print(
      renderTable(
        ["TICK", "TRIGGER", "OUTCOME", "TICKS", "JOB", "JOB STATUS", "LATE"],
        details.runs.map((run) => [
          shortTime(run.tickAt),
          run.trigger,
          run.outcome === "fired" ? "fired" : `skipped: ${run.skipReason}`,
          String(run.ticks),
          run.jobId === null ? "—" : String(run.jobId),
          run.job ? run.job.status : run.jobId === null ? "—" : "gone",
          run.lateMs === null ? "—" : run.lateMs < 0 ? "ahead" : shortDuration(run.lateMs),
        ]),
      ),
    );
  }
  return EXIT.ok;
}

/** `pgwake schedules create <name> --cron … --task …`. */
export async function schedulesCreate(
  ctx: SchedulesCliContext,
  args: SchedulesCliArgs,
): Promise<number> {
  const name = nameOf(args);
  const spec = definitionFlags(args.flags);
  if (spec.cron === undefined) throw new UsageError("--cron is required");
  if (spec.task === undefined) throw new UsageError("--task is required");
  const schedule = await cliCall(() =>
    createSchedule(
      ctx.db,
      ctx.sql,
      { ...spec, name, cron: spec.cron!, task: spec.task!, paused: args.flags.paused === true },
      { ...knowledgeOf(ctx), definedBy: "cli" },
    ),
  );
  if (args.flags.json) printJson(ctx, scheduleJson(schedule));
  else ctx.print(`created schedule ${schedule.name}: ${describeNext(schedule)}\n`);
  return EXIT.ok;
}

/** `pgwake schedules update <name> [flags]`. */
export async function schedulesUpdate(
  ctx: SchedulesCliContext,
  args: SchedulesCliArgs,
): Promise<number> {
  const name = nameOf(args);
  const patch = definitionFlags(args.flags);
  if (Object.keys(patch).length === 0)
    throw new UsageError("nothing to change: give at least one flag");
  const schedule = found(
    name,
    await cliCall(() => updateSchedule(ctx.db, ctx.sql, name, patch, ctx.knowledge ?? {})),
  );
  if (args.flags.json) printJson(ctx, scheduleJson(schedule));
  else ctx.print(`updated schedule ${schedule.name}: ${describeNext(schedule)}\n`);
  return EXIT.ok;
}

/** `pgwake schedules delete <name> [--force]`. */
export async function schedulesDelete(
  ctx: SchedulesCliContext,
  args: SchedulesCliArgs,
): Promise<number> {
  const name = nameOf(args);
  const schedule = found(
    name,
    await cliCall(() =>
      deleteSchedule(ctx.db, ctx.sql, name, { force: args.flags.force === true }),
    ),
  );
  if (args.flags.json) printJson(ctx, scheduleJson(schedule));
  else ctx.print(`deleted schedule ${schedule.name} (its jobs stay)\n`);
  return EXIT.ok;
}

async function setPaused(
  ctx: SchedulesCliContext,
  args: SchedulesCliArgs,
  paused: boolean,
): Promise<number> {
  const name = nameOf(args);
  const schedule = found(
    name,
    paused
      ? await pauseSchedule(ctx.db, ctx.sql, name)
      : await resumeSchedule(ctx.db, ctx.sql, name),
  );
  if (args.flags.json) printJson(ctx, scheduleJson(schedule));
  else
    ctx.print(
      `schedule ${schedule.name} ${paused ? "paused" : `resumed: ${describeNext(schedule)}`}\n`,
    );
  return EXIT.ok;
}

/** `pgwake schedules pause <name>`. */
export function schedulesPause(ctx: SchedulesCliContext, args: SchedulesCliArgs): Promise<number> {
  return setPaused(ctx, args, true);
}

/** `pgwake schedules resume <name>`. */
export function schedulesResume(ctx: SchedulesCliContext, args: SchedulesCliArgs): Promise<number> {
  return setPaused(ctx, args, false);
}

/** `pgwake schedules trigger <name> [--idempotency-key k]`. */
export async function schedulesTrigger(
  ctx: SchedulesCliContext,
  args: SchedulesCliArgs,
): Promise<number> {
  const name = nameOf(args);
  const key = args.flags["idempotency-key"];
  if (key !== undefined && (typeof key !== "string" || key.length === 0 || key.length > 128)) {
    throw new UsageError("--idempotency-key: 1 to 128 characters");
  }
  const triggered = found(
    name,
    await cliCall(() =>
      triggerSchedule(
        ctx.db,
        ctx.sql,
        name,
        key !== undefined ? { idempotencyKey: key as string } : {},
      ),
    ),
  );
  if (args.flags.json) printJson(ctx, triggerResultJson(triggered));
  else {
    ctx.print(
      `${triggered.duplicate ? "already triggered with this key: " : ""}job ${triggered.job.id} (${triggered.job.task}, queue ${triggered.job.queue}) for schedule ${name}\n`,
    );
  }
  return EXIT.ok;
}

function describeNext(schedule: Schedule): string {
  if (schedule.paused) return "paused";
  if (schedule.nextRunAt === null) return "next tick planned by the next service pass";
  return `next tick ${shortTime(schedule.nextRunAt)} (${schedule.cron} in ${schedule.timeZone})`;
}

/** The runner of each schedules command, by id. */
export const SCHEDULE_CLI_RUNNERS: Record<
  ScheduleCommandId,
  (ctx: SchedulesCliContext, args: SchedulesCliArgs) => Promise<number>
> = {
  "schedules list": schedulesList,
  "schedules get": schedulesGet,
  "schedules create": schedulesCreate,
  "schedules update": schedulesUpdate,
  "schedules delete": schedulesDelete,
  "schedules pause": schedulesPause,
  "schedules resume": schedulesResume,
  "schedules trigger": schedulesTrigger,
};
