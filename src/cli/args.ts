import { type ParseArgsConfig, parseArgs } from "node:util";
import { type Config, type FlagValues, SETTINGS, type Setting } from "../config.ts";
import { UsageError } from "./errors.ts";

export type CommandName = "start" | "api" | "worker" | "migrate" | "enqueue";

/** A flag a command takes besides the configuration settings. */
interface ExtraFlag {
  name: string;
  type: "string" | "boolean";
  placeholder?: string;
  description: string;
}

/** What a command is, which settings it reads and how `--help` shows it. */
export interface CommandSpec {
  name: CommandName;
  summary: string;
  usage: string;
  description: string;
  settings: readonly (keyof Config)[];
  extra?: readonly ExtraFlag[];
  /** Most positional arguments accepted. */
  maxPositionals: number;
}

const DATABASE = ["databaseUrl", "schema", "dataDir", "embeddedPort"] as const;
const LOGGING = ["logLevel", "logFormat"] as const;
const TASKS = ["tasks", "builtinTasks"] as const;
const API = ["port", "host", "apiKeys", "bodyLimitBytes", "batchLimit", "metricsPublic"] as const;
const WORKER = [
  "queues",
  "concurrency",
  "pollIntervalMs",
  "claimCooldownMs",
  "leaseMs",
  "heartbeatMs",
  "jobTimeoutMs",
  "retentionMs",
  "notify",
] as const;

export const COMMANDS: Record<CommandName, CommandSpec> = {
  start: {
    name: "start",
    summary: "migrate, then run the HTTP API and a worker in one process",
    usage: "pgwake start [flags]",
    description:
      "The all-in-one mode. Without DATABASE_URL it starts (or reuses) an embedded Postgres in\n" +
      "PGWAKE_DATA_DIR, so `npm start` needs no setup.",
    settings: [...DATABASE, ...API, ...WORKER, ...TASKS, "shutdownGraceMs", ...LOGGING],
    maxPositionals: 0,
  },
  api: {
    name: "api",
    summary: "run the HTTP API only",
    usage: "pgwake api [flags]",
    description:
      "Serves the HTTP API. It does not migrate when DATABASE_URL is set (run `pgwake migrate`);\n" +
      "/ready answers 503 until the schema is current.",
    settings: [...DATABASE, ...API, ...TASKS, "shutdownGraceMs", ...LOGGING],
    maxPositionals: 0,
  },
  worker: {
    name: "worker",
    summary: "run a worker only (scale these out)",
    usage: "pgwake worker [flags]",
    description:
      "Claims and runs jobs of the tasks it knows (built-ins and --tasks) from PGWAKE_QUEUES.\n" +
      "It does not migrate when DATABASE_URL is set: it refuses to start on an old schema.",
    settings: [...DATABASE, ...WORKER, ...TASKS, "shutdownGraceMs", ...LOGGING],
    maxPositionals: 0,
  },
  migrate: {
    name: "migrate",
    summary: "apply pending migrations and exit",
    usage: "pgwake migrate [flags]",
    description: "Safe to run from many processes at once: migrations are serialised by a lock.",
    settings: [...DATABASE, ...LOGGING],
    maxPositionals: 0,
  },
  enqueue: {
    name: "enqueue",
    summary: "add a job and print it as JSON",
    usage: "pgwake enqueue <task> [payload-json] [flags]",
    description:
      "Adds one job; prints it as JSON on stdout (logs go to stderr). Payloads of known tasks\n" +
      "(built-ins and --tasks) are validated and their defaults applied.\n" +
      'Example: pgwake enqueue demo.echo \'{"hello":"world"}\' --priority=-1',
    settings: [...DATABASE, ...TASKS, ...LOGGING],
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
    maxPositionals: 2,
  },
};

/** A parsed command line. */
export interface ParsedCommand {
  spec: CommandSpec;
  help: boolean;
  flags: FlagValues;
  extra: Record<string, string | boolean | undefined>;
  positionals: string[];
}

const bySettingKey = new Map<keyof Config, Setting>(SETTINGS.map((s) => [s.key, s]));

/** Parses a command's arguments; unknown flags and missing values throw `UsageError`. */
export function parseCommand(spec: CommandSpec, args: string[]): ParsedCommand {
  const options: NonNullable<ParseArgsConfig["options"]> = {
    help: { type: "boolean", short: "h" },
  };
  for (const key of spec.settings) {
    const setting = bySettingKey.get(key)!;
    options[setting.flag] = { type: setting.boolean ? "boolean" : "string" };
  }
  for (const flag of spec.extra ?? []) options[flag.name] = { type: flag.type };

  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
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
  const flags: FlagValues = {};
  for (const key of spec.settings) {
    const setting = bySettingKey.get(key)!;
    const value = values[setting.flag];
    if (value !== undefined) flags[key] = value;
  }
  const extra: Record<string, string | boolean | undefined> = {};
  for (const flag of spec.extra ?? []) extra[flag.name] = values[flag.name];
  return { spec, help: false, flags, extra, positionals };
}

/** `pgwake <command> --help`. */
export function commandHelp(spec: CommandSpec): string {
  const rows: [string, string][] = [];
  for (const flag of spec.extra ?? []) {
    rows.push([
      `--${flag.name}${flag.placeholder ? ` <${flag.placeholder}>` : ""}`,
      flag.description,
    ]);
  }
  for (const key of spec.settings) {
    const s = bySettingKey.get(key)!;
    const name = s.boolean ? `--[no-]${s.flag}` : `--${s.flag} <value>`;
    rows.push([name, `${s.description} [${s.env}, default ${s.default}]`]);
  }
  rows.push(["-h, --help", "Show this help."]);
  const width = Math.max(...rows.map(([name]) => name.length)) + 2;
  const lines = rows.flatMap(([name, text]) => {
    const [what, where] = text.split(" [");
    const first = `  ${name.padEnd(width)}${what}`;
    return where ? [first, `  ${"".padEnd(width)}[${where}`] : [first];
  });
  return [
    `Usage: ${spec.usage}`,
    "",
    `${spec.summary[0]!.toUpperCase()}${spec.summary.slice(1)}.`,
    spec.description,
    "",
    "Flags (each overrides its environment variable):",
    ...lines,
    "",
  ].join("\n");
}

/** `pgwake --help`. */
export function topLevelHelp(version: string): string {
  const names = Object.values(COMMANDS);
  const width = Math.max(...names.map((c) => c.name.length)) + 2;
  return [
    `pgwake ${version}: a job queue that lives in PostgreSQL`,
    "",
    "Usage: pgwake <command> [flags]",
    "",
    "Commands:",
    ...names.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    "",
    "Run `pgwake <command> --help` for its flags. Every flag has an environment variable;",
    "without DATABASE_URL pgwake runs an embedded Postgres in ./.pgwake/postgres.",
    "",
    "  -h, --help     Show this help.",
    "  -v, --version  Print the version.",
    "",
  ].join("\n");
}
