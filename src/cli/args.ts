import { type ParseArgsConfig, parseArgs } from "node:util";
import type { FlagValues } from "../config.ts";
import { SCHEDULE_COMMANDS } from "../schedules/cli.ts";
import { type CommandName, defaultText, type SettingEntry, settingsOf } from "../settings.ts";
import { UsageError } from "./errors.ts";

/** A flag a command takes besides the settings. */
export interface ExtraFlag {
  name: string;
  type: "string" | "boolean";
  placeholder?: string;
  /** Flags may be given more than once (`--status failed --status cancelled`). */
  multiple?: boolean;
  description: string;
}

/** What a command is, which settings it reads (see src/settings.ts) and how `--help` shows it. */
export interface CommandSpec {
  /** `start`, or `jobs list` for a subcommand. */
  id: string;
  /** The command whose settings it reads. */
  command: CommandName;
  summary: string;
  usage: string;
  description: string;
  extra?: readonly ExtraFlag[];
  minPositionals?: number;
  /** Most positional arguments accepted (Infinity: a list of ids). */
  maxPositionals: number;
}

const JSON_FLAG: ExtraFlag = {
  name: "json",
  type: "boolean",
  description: "Print JSON for scripts instead of a table.",
};

const ENQUEUE: CommandSpec = {
  id: "enqueue",
  command: "enqueue",
  summary: "add a job and print it as JSON",
  usage: "pgwake enqueue <task> [payload-json] [flags]",
  description:
    'Adds one job; prints {"job": …, "duplicate": …} on stdout (logs go to stderr). "duplicate"\n' +
    "is true when the idempotency key was already used: the job printed is the original. Payloads\n" +
    "of known tasks (built-ins and --tasks) are validated and their defaults applied; a task this\n" +
    "process does not define is refused (PGWAKE_UNKNOWN_TASKS=warn accepts it).\n" +
    'Example: pgwake enqueue demo.echo \'{"hello":"world"}\' --priority=-1',
  extra: [
    { name: "queue", type: "string", placeholder: "name", description: "Queue of the job." },
    {
      name: "priority",
      type: "string",
      placeholder: "n",
      description: "Lower runs first (default 0; negative: --priority=-1).",
    },
    {
      name: "delay-ms",
      type: "string",
      placeholder: "ms",
      description: "Run no earlier than this many ms from now.",
    },
    {
      name: "run-at",
      type: "string",
      placeholder: "iso-time",
      description: "Run no earlier than this time (ISO 8601).",
    },
    {
      name: "max-attempts",
      type: "string",
      placeholder: "n",
      description: "Attempts before the job fails for good.",
    },
    {
      name: "timeout-ms",
      type: "string",
      placeholder: "ms",
      description: "Time limit of one attempt.",
    },
    {
      name: "idempotency-key",
      type: "string",
      placeholder: "key",
      description: "A second job with the same key (and queue) returns the first.",
    },
  ],
  minPositionals: 1,
  maxPositionals: 2,
};

/** Every command, subcommands as `group action`. */
export const COMMANDS: Record<string, CommandSpec> = {
  start: {
    id: "start",
    command: "start",
    summary: "migrate, then run the HTTP API and a worker in one process",
    usage: "pgwake start [flags]",
    description:
      "The all-in-one mode. Without DATABASE_URL it starts (or reuses) an embedded Postgres in\n" +
      "PGWAKE_DATA_DIR, so `npm start` needs no setup.",
    maxPositionals: 0,
  },
  api: {
    id: "api",
    command: "api",
    summary: "run the HTTP API only",
    usage: "pgwake api [flags]",
    description:
      "Serves the HTTP API. It does not migrate when DATABASE_URL is set (run `pgwake migrate`);\n" +
      "/ready answers 503 until the schema is current.",
    maxPositionals: 0,
  },
  worker: {
    id: "worker",
    command: "worker",
    summary: "run a worker only (scale these out)",
    usage: "pgwake worker [flags]",
    description:
      "Claims and runs jobs of the tasks it knows (built-ins and --tasks) from PGWAKE_QUEUES.\n" +
      "It does not migrate when DATABASE_URL is set: it refuses to start on an old schema.",
    maxPositionals: 0,
  },
  migrate: {
    id: "migrate",
    command: "migrate",
    summary: "apply pending migrations and exit",
    usage: "pgwake migrate [flags]",
    description: "Safe to run from many processes at once: migrations are serialised by a lock.",
    maxPositionals: 0,
  },
  enqueue: ENQUEUE,
  "jobs list": {
    id: "jobs list",
    command: "jobs",
    summary: "list jobs, newest first",
    usage: "pgwake jobs list [--queue q] [--status s,…] [--task t] [--limit n] [--before id]",
    description:
      "One page of jobs, newest first. The last line (or nextBefore in --json) says how to get\n" +
      "the next page.",
    extra: [
      { name: "queue", type: "string", placeholder: "name", description: "Only this queue." },
      {
        name: "status",
        type: "string",
        placeholder: "statuses",
        description:
          "Only these statuses, comma-separated (pending, running, retrying, completed, failed, cancelled).",
      },
      { name: "task", type: "string", placeholder: "name", description: "Only this task." },
      {
        name: "limit",
        type: "string",
        placeholder: "n",
        description: "Jobs per page, 1 to 1000 (default 50).",
      },
      {
        name: "before",
        type: "string",
        placeholder: "id",
        description: "Only jobs with a smaller id (the next page).",
      },
      JSON_FLAG,
    ],
    maxPositionals: 0,
  },
  "jobs get": {
    id: "jobs get",
    command: "jobs",
    summary: "show one job and its timeline",
    usage: "pgwake jobs get <id> [--events n] [--json]",
    description:
      "The job's row (payload, result, last error) and the first events of its timeline.",
    extra: [
      {
        name: "events",
        type: "string",
        placeholder: "n",
        description: "Timeline events to show, 0 to 1000 (default 20).",
      },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "jobs retry": {
    id: "jobs retry",
    command: "jobs",
    summary: "send failed or cancelled jobs back to the queue",
    usage: "pgwake jobs retry <id>… [--json]",
    description:
      "Each failed or cancelled job goes back to pending with a fresh attempt budget. Exits 1 when\n" +
      "any of the jobs was not retried (not found, or not failed or cancelled), naming why.",
    extra: [JSON_FLAG],
    minPositionals: 1,
    maxPositionals: Number.POSITIVE_INFINITY,
  },
  "jobs cancel": {
    id: "jobs cancel",
    command: "jobs",
    summary: "cancel pending, retrying or running jobs",
    usage: "pgwake jobs cancel <id>… [--reason text] [--json]",
    description:
      "A running job's handler gets its abort signal. Exits 1 when any of the jobs was not\n" +
      "cancelled (not found, or already finished), naming why.",
    extra: [
      {
        name: "reason",
        type: "string",
        placeholder: "text",
        description: "Recorded on the cancelled event.",
      },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: Number.POSITIVE_INFINITY,
  },
  "queues list": {
    id: "queues list",
    command: "queues",
    summary: "list queues: jobs by status, oldest ready job, paused, workers",
    usage: "pgwake queues [list] [--json]",
    description: "Every queue with jobs, settings or a live worker.",
    extra: [JSON_FLAG],
    maxPositionals: 0,
  },
  "queues pause": {
    id: "queues pause",
    command: "queues",
    summary: "pause a queue: no worker claims from it until it is resumed",
    usage: "pgwake queues pause <name> [--create] [--json]",
    description:
      "Running jobs finish; new ones wait. A name no job, worker or setting has yet is refused\n" +
      "(exit 1: a misspelt name would show as a queue for ever) unless --create is given.",
    extra: [
      {
        name: "create",
        type: "boolean",
        description: "Pause a queue that has no jobs or workers yet.",
      },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "queues resume": {
    id: "queues resume",
    command: "queues",
    summary: "resume a paused queue (wakes its workers)",
    usage: "pgwake queues resume <name> [--create] [--json]",
    description: "Waiting workers are woken at once. An unknown name is refused as for pause.",
    extra: [
      { name: "create", type: "boolean", description: "Accept a queue no one knows yet." },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "queues limits": {
    id: "queues limits",
    command: "queues",
    summary: "show or set a queue's limits: concurrency, per key, rates, fairness",
    usage:
      "pgwake queues limits <name> [--concurrency n] [--key-concurrency n] [--rate n/period]\n" +
      "       [--burst n] [--key-rate n/period] [--key-burst n] [--fair] [--clear] [--create] [--json]",
    description:
      "Without a limit flag, shows the queue's limits and their state. With any, sets them across\n" +
      "every worker, replacing all the queue had (what is not given is removed); lowering a limit\n" +
      "aborts no running job. A period is ms, s, m or h (100/s, 5/1m, 1/250ms). --clear removes the\n" +
      "limits (task definitions' defaults apply again as workers start).",
    extra: [
      {
        name: "concurrency",
        type: "string",
        placeholder: "n",
        description: "Jobs of the queue running at once.",
      },
      {
        name: "key-concurrency",
        type: "string",
        placeholder: "n",
        description: "Jobs of one concurrency key running at once (1: a serial lane per key).",
      },
      {
        name: "rate",
        type: "string",
        placeholder: "n/period",
        description: "Job starts per period for the queue.",
      },
      {
        name: "burst",
        type: "string",
        placeholder: "n",
        description: "Starts allowed at once (default 1).",
      },
      {
        name: "key-rate",
        type: "string",
        placeholder: "n/period",
        description: "Job starts per period per key.",
      },
      { name: "key-burst", type: "string", placeholder: "n", description: "As --burst, per key." },
      { name: "fair", type: "boolean", description: "Keys take the queue's starts in turn." },
      { name: "clear", type: "boolean", description: "Remove the queue's limits." },
      { name: "create", type: "boolean", description: "Accept a queue no one knows yet." },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
  "queues keys": {
    id: "queues keys",
    command: "queues",
    summary: "the busiest concurrency keys of a limited queue",
    usage: "pgwake queues keys <name> [--limit n] [--json]",
    description:
      "Keys by jobs running, then least recently served: running, tokens left, jobs ready.",
    extra: [
      {
        name: "limit",
        type: "string",
        placeholder: "n",
        description: "Most keys (default 20, at most 1000).",
      },
      JSON_FLAG,
    ],
    minPositionals: 1,
    maxPositionals: 1,
  },
  ...Object.fromEntries(
    Object.values(SCHEDULE_COMMANDS).map((spec) => [spec.id, { ...spec, command: "schedules" }]),
  ),
  stats: {
    id: "stats",
    command: "stats",
    summary: "totals by status, per-queue counts and the live workers",
    usage: "pgwake stats [--json]",
    description: "An operator's overview of the whole schema, read from the database.",
    extra: [JSON_FLAG],
    maxPositionals: 0,
  },
};

/** Commands made of subcommands, and the one run when none is named. */
export const GROUPS: Record<string, { summary: string; fallback?: string }> = {
  jobs: { summary: "list, show, retry and cancel jobs (jobs list|get|retry|cancel)" },
  queues: {
    summary: "list queues, pause or resume one (queues [list|pause|resume])",
    fallback: "list",
  },
  schedules: {
    summary: "cron schedules (schedules [list|get|create|update|delete|pause|resume|trigger])",
    fallback: "list",
  },
};

/** Finds the command named at the start of `argv`; the rest are its arguments. */
export function findCommand(argv: readonly string[]): { spec: CommandSpec; args: string[] } {
  const [name = "", ...rest] = argv;
  const group = Object.hasOwn(GROUPS, name) ? GROUPS[name]! : undefined;
  if (!group) {
    const spec = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!spec || spec.id.includes(" ")) {
      throw new UsageError(`unknown command "${name}" (commands: ${topLevelNames().join(", ")})`);
    }
    return { spec, args: rest };
  }
  const [action, ...args] = rest;
  const actions = subcommandsOf(name).map((s) => s.id.split(" ")[1]!);
  if (action === "-h" || action === "--help") throw new GroupHelp(name);
  if (action === undefined || action.startsWith("-")) {
    if (group.fallback) return { spec: COMMANDS[`${name} ${group.fallback}`]!, args: rest };
    throw new UsageError(`pgwake ${name} needs one of: ${actions.join(", ")}`);
  }
  const spec = COMMANDS[`${name} ${action}`];
  if (!spec) {
    throw new UsageError(`unknown command "${name} ${action}" (${name}: ${actions.join(", ")})`);
  }
  return { spec, args };
}

/** Thrown by `findCommand` for `pgwake <group> --help`. */
export class GroupHelp extends Error {
  readonly group: string;
  constructor(group: string) {
    super(`help for ${group}`);
    this.group = group;
  }
}

function subcommandsOf(group: string): CommandSpec[] {
  return Object.values(COMMANDS).filter((s) => s.id.startsWith(`${group} `));
}

function topLevelNames(): string[] {
  const names = Object.values(COMMANDS).map((s) => s.id.split(" ")[0]!);
  return [...new Set(names)];
}

/** A parsed command line. */
export interface ParsedCommand {
  spec: CommandSpec;
  help: boolean;
  flags: FlagValues;
  extra: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parses a command's arguments; unknown flags and missing values throw `UsageError`. */
export function parseCommand(spec: CommandSpec, args: string[]): ParsedCommand {
  const settings = settingsOf(spec.command);
  const options: NonNullable<ParseArgsConfig["options"]> = {
    help: { type: "boolean", short: "h" },
  };
  for (const s of settings) options[s.flag] = { type: s.switch ? "boolean" : "string" };
  for (const flag of spec.extra ?? []) {
    options[flag.name] = { type: flag.type, multiple: flag.multiple ?? false };
  }
  // `--no-x` of a value setting stands for its negated value (`--no-builtin-tasks`: none).
  const negated = new Map(
    settings.filter((s) => s.negatedValue !== undefined).map((s) => [`--no-${s.flag}`, s]),
  );
  const expanded = args.map((arg) => {
    const s = negated.get(arg);
    return s ? `--${s.flag}=${s.negatedValue}` : arg;
  });

  let parsed: {
    values: Record<string, string | boolean | string[] | undefined>;
    positionals: string[];
  };
  try {
    parsed = parseArgs({
      args: expanded,
      options,
      strict: true,
      allowPositionals: true,
      allowNegative: true,
    }) as typeof parsed;
  } catch (error) {
    const message = (error as Error).message;
    const unknown = /Unknown option '([^']+)'/.exec(message);
    throw new UsageError(unknown ? `unknown flag ${unknown[1]}` : message, { cause: error });
  }
  const { values, positionals } = parsed;
  if (values.help) return { spec, help: true, flags: {}, extra: {}, positionals };
  if (positionals.length > spec.maxPositionals) {
    const unexpected = positionals.slice(spec.maxPositionals).join(" ");
    throw new UsageError(`unexpected argument(s): ${unexpected}`);
  }
  if (positionals.length < (spec.minPositionals ?? 0)) {
    throw new UsageError(`missing argument(s): ${spec.usage}`);
  }
  const flags: FlagValues = {};
  for (const s of settings) {
    const value = values[s.flag];
    if (value !== undefined && !Array.isArray(value)) flags[s.key] = value;
  }
  const extra: ParsedCommand["extra"] = {};
  for (const flag of spec.extra ?? []) extra[flag.name] = values[flag.name];
  return { spec, help: false, flags, extra, positionals };
}

function settingRow(s: SettingEntry): [string, string, string] {
  const name = s.switch ? `--[no-]${s.flag}` : `--${s.flag} <${s.placeholder ?? "value"}>`;
  return [name, s.description, `${s.env}, default ${defaultText(s)}`];
}

function formatRows(rows: readonly [string, string, string?][]): string[] {
  const width = Math.max(...rows.map(([name]) => name.length)) + 2;
  return rows.flatMap(([name, what, where]) => {
    const first = `  ${name.padEnd(width)}${what}`;
    return where ? [first, `  ${"".padEnd(width)}[${where}]`] : [first];
  });
}

/** `pgwake <command> --help`. */
export function commandHelp(spec: CommandSpec): string {
  const extra: [string, string][] = (spec.extra ?? []).map((flag) => [
    `--${flag.name}${flag.placeholder ? ` <${flag.placeholder}>` : ""}`,
    flag.description,
  ]);
  const rows = [...extra, ...settingsOf(spec.command).map(settingRow)];
  rows.push(["-h, --help", "Show this help."]);
  return [
    `Usage: ${spec.usage}`,
    "",
    `${spec.summary[0]!.toUpperCase()}${spec.summary.slice(1)}.`,
    spec.description,
    "",
    "Flags (each setting's flag overrides its environment variable):",
    ...formatRows(rows),
    "",
  ].join("\n");
}

/** `pgwake <group> --help`: the subcommands. */
export function groupHelp(group: string): string {
  const subs = subcommandsOf(group);
  const width = Math.max(...subs.map((s) => s.id.length)) + 2;
  return [
    `Usage: pgwake ${group} <${subs.map((s) => s.id.split(" ")[1]).join("|")}> [flags]`,
    "",
    ...subs.map((s) => `  ${s.id.padEnd(width)}${s.summary}`),
    "",
    `Run \`pgwake ${group} <action> --help\` for its flags.`,
    "",
  ].join("\n");
}

/** `pgwake --help`. */
export function topLevelHelp(version: string): string {
  const rows: [string, string][] = [];
  for (const spec of Object.values(COMMANDS)) {
    const [name] = spec.id.split(" ");
    if (!spec.id.includes(" ")) rows.push([spec.id, spec.summary]);
    else if (!rows.some(([shown]) => shown === name)) rows.push([name!, GROUPS[name!]!.summary]);
  }
  const width = Math.max(...rows.map(([name]) => name.length)) + 2;
  return [
    `pgwake ${version}: a job queue that lives in PostgreSQL`,
    "",
    "Usage: pgwake <command> [flags]",
    "",
    "Commands:",
    ...rows.map(([name, summary]) => `  ${name.padEnd(width)}${summary}`),
    "",
    "Run `pgwake <command> --help` for its flags. Every setting has a flag and an environment",
    "variable; without DATABASE_URL pgwake runs an embedded Postgres in ./.pgwake/postgres.",
    "Exit codes: 0 done, 1 failed, 2 bad command line or configuration.",
    "",
    "  -h, --help     Show this help.",
    "  -v, --version  Print the version.",
    "",
  ].join("\n");
}
