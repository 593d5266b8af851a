import { z } from "zod";
import { DEFAULT_NETWORK_TIMEOUT_MS } from "./db/pool.ts";
import { SCHEMA_PATTERN } from "./db/sql.ts";

/**
 * Every setting of pgwake, each declared once: its environment variable, its flag, its default,
 * how its text is parsed and checked, what it means and which commands read it. `--help`,
 * validation, the defaults (`SETTING_DEFAULTS`) and docs/configuration.md are all made from
 * this table; adding a setting is adding one entry (and using its value where it applies).
 */

/** The `pgwake` commands (the operator commands `jobs …`, `queues …`, `stats`, `schedules …`). */
export const COMMAND_NAMES = [
  "start",
  "api",
  "worker",
  "migrate",
  "enqueue",
  "jobs",
  "queues",
  "stats",
  "schedules",
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Groups of built-in tasks, turned on one by one with `PGWAKE_BUILTIN_TASKS`. */
export const BUILTIN_GROUPS = ["demo", "http"] as const;
export type BuiltinGroup = (typeof BUILTIN_GROUPS)[number];

/** What a process does with a task name it knows is not defined (see `Pgwake`'s `unknownTasks`). */
export const UNKNOWN_TASK_POLICIES = ["refuse", "warn"] as const;
export type UnknownTaskPolicy = (typeof UNKNOWN_TASK_POLICIES)[number];

/** One setting. `T` is the parsed value's type. */
export interface SettingSpec<T> {
  /** Environment variable. */
  env: string;
  /** Flag, without the leading dashes. */
  flag: string;
  /** A switch: `--flag` / `--no-flag`, and on/off in the environment. */
  switch?: boolean;
  /**
   * For a value flag, what `--no-flag` stands for (e.g. `none`); without it `--no-flag` is an
   * unknown flag.
   */
  negatedValue?: string;
  /** Placeholder in `--help` (`--port <value>`). */
  placeholder?: string;
  /** The value when neither the flag nor the variable is given; `undefined`: unset. */
  default: T;
  /** How `--help` and the docs show the default, when not its plain text. */
  defaultText?: string;
  /** Parses the text given (or a switch's boolean); its messages are what the user reads. */
  parse: z.ZodType<T>;
  /** A path, resolved against the working directory. */
  path?: boolean;
  /** Never logged as it is (`redactConfig`). */
  secret?: boolean;
  description: string;
  commands: readonly CommandName[];
}

const setting = <T>(spec: SettingSpec<T>): SettingSpec<T> => spec;

// ---- parsers ------------------------------------------------------------------------------------

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const SIZES: Record<string, number> = { b: 1, kb: 1_024, mb: 1_048_576 };
const SWITCH_ON = new Set(["on", "true", "1", "yes"]);
const SWITCH_OFF = new Set(["off", "false", "0", "no"]);
const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

const text = z.string().trim();
const integer = (min: number, max: number) =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be at least ${min}` })
    .max(max, { error: `must be at most ${max}` });

const onOff = z.union([z.boolean(), text.toLowerCase()]).transform((value, ctx) => {
  if (typeof value === "boolean") return value;
  if (SWITCH_ON.has(value)) return true;
  if (SWITCH_OFF.has(value)) return false;
  ctx.addIssue({ code: "custom", message: "must be on or off" });
  return z.NEVER;
});

const list = text.transform((value) =>
  value
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item.length > 0),
);

/** A queue a worker serves, with at most `slots` of its handler slots. */
export interface QueueSetting {
  name: string;
  slots?: number;
}

const queueList = text.transform((value, ctx): QueueSetting[] | null => {
  const items = value
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
  if (items.length === 1 && items[0] === "*") return null;
  if (items.length === 0) {
    ctx.addIssue({ code: "custom", message: "must name at least one queue, or *" });
    return z.NEVER;
  }
  const out: QueueSetting[] = [];
  for (const item of items) {
    // A queue name may hold ':' (emails:eu); a last ':' followed by digits gives its slots.
    const match = /^(.+?)(?::(\d{1,6}))?$/.exec(item);
    if (!match || !NAME.test(match[1]!) || (match[2] !== undefined && Number(match[2]) < 1)) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(item)}: a queue is a name of letters, digits, _ . : - with an optional :slots (at least 1), or * alone`,
      });
      return z.NEVER;
    }
    out.push(
      match[2] === undefined ? { name: match[1]! } : { name: match[1]!, slots: Number(match[2]) },
    );
  }
  return out;
});

const choice = <const Values extends readonly [string, ...string[]]>(values: Values) =>
  text.toLowerCase().pipe(z.enum(values, { error: `must be one of ${values.join(", ")}` }));

const duration = text.toLowerCase().transform((value, ctx): number | null => {
  if (value === "0" || value === "forever" || value === "off") return null;
  const match = /^(\d+)(ms|s|m|h|d|w)?$/.exec(value);
  if (!match) {
    ctx.addIssue({
      code: "custom",
      message: "must be milliseconds or like 30s, 15m, 12h, 7d; 0 or forever keeps jobs",
    });
    return z.NEVER;
  }
  return Number(match[1]) * UNITS[match[2] ?? "ms"]!;
});

const size = text.toLowerCase().transform((value, ctx) => {
  const match = /^(\d+)(b|kb|mb)?$/.exec(value);
  const bytes = match ? Number(match[1]) * SIZES[match[2] ?? "b"]! : Number.NaN;
  if (!(bytes >= 1_024 && bytes <= 100 * 1_048_576)) {
    ctx.addIssue({ code: "custom", message: "must be a size from 1kb to 100mb (e.g. 1mb, 512kb)" });
    return z.NEVER;
  }
  return bytes;
});

const builtinGroups = text.toLowerCase().transform((value, ctx): BuiltinGroup[] => {
  if (value === "none" || value === "off") return [];
  if (value === "all") return [...BUILTIN_GROUPS];
  const items = value
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
  const wrong = items.filter((item) => !(BUILTIN_GROUPS as readonly string[]).includes(item));
  if (items.length === 0 || wrong.length > 0) {
    ctx.addIssue({
      code: "custom",
      message: `must be a comma-separated list of ${BUILTIN_GROUPS.join(", ")}, or all, or none`,
    });
    return z.NEVER;
  }
  return [...new Set(items as BuiltinGroup[])];
});

// ---- the table ----------------------------------------------------------------------------------

const EVERY: readonly CommandName[] = COMMAND_NAMES;
const SERVES_API: readonly CommandName[] = ["start", "api"];
const RUNS_JOBS: readonly CommandName[] = ["start", "worker"];
const LOADS_TASKS: readonly CommandName[] = ["start", "api", "worker", "enqueue", "schedules"];
const SUBMITS: readonly CommandName[] = ["start", "api", "enqueue"];
const LONG_RUNNING: readonly CommandName[] = ["start", "api", "worker"];

/** Every setting, in the order of `--help` and docs/configuration.md. */
export const SETTINGS = {
  databaseUrl: setting<string | undefined>({
    env: "DATABASE_URL",
    flag: "database-url",
    placeholder: "url",
    default: undefined,
    defaultText: "(embedded Postgres)",
    parse: text.refine((value) => /^postgres(ql)?:\/\//.test(value) && URL.canParse(value), {
      message: "must be a postgres:// or postgresql:// URL",
    }),
    secret: true,
    description: "Postgres connection string. Unset: start (or reuse) an embedded Postgres.",
    commands: EVERY,
  }),
  schema: setting({
    env: "PGWAKE_SCHEMA",
    flag: "schema",
    placeholder: "name",
    default: "pgwake",
    parse: text.regex(SCHEMA_PATTERN, {
      message: "must be a lower-case identifier (letters, digits, _; at most 63)",
    }),
    description: "Schema holding pgwake's tables.",
    commands: EVERY,
  }),
  dataDir: setting({
    env: "PGWAKE_DATA_DIR",
    flag: "data-dir",
    placeholder: "dir",
    default: "./.pgwake/postgres",
    parse: text.min(1),
    path: true,
    description: "Embedded Postgres data directory (only without DATABASE_URL).",
    commands: EVERY,
  }),
  embeddedPort: setting({
    env: "PGWAKE_EMBEDDED_PORT",
    flag: "embedded-port",
    placeholder: "port",
    default: 54_329,
    parse: integer(1, 65_535),
    description: "Embedded Postgres port (only without DATABASE_URL).",
    commands: EVERY,
  }),
  embeddedHome: setting({
    env: "PGWAKE_EMBEDDED_HOME",
    flag: "embedded-home",
    placeholder: "dir",
    default: "/var/lib/pgwake",
    parse: text.min(1),
    path: true,
    description:
      "Run as root, the embedded Postgres runs as the postgres user: what that user cannot reach (the binaries, a data directory under a mode-700 home) is kept here instead.",
    commands: EVERY,
  }),
  port: setting({
    env: "PORT",
    flag: "port",
    default: 3_000,
    parse: integer(0, 65_535),
    description: "HTTP API port.",
    commands: SERVES_API,
  }),
  host: setting({
    env: "HOST",
    flag: "host",
    default: "127.0.0.1",
    parse: text.min(1),
    description: "HTTP API bind address (the container image sets 0.0.0.0).",
    commands: SERVES_API,
  }),
  apiKeys: setting<string[]>({
    env: "PGWAKE_API_KEYS",
    flag: "api-keys",
    placeholder: "keys",
    default: [],
    defaultText: "(none: open API)",
    parse: list,
    secret: true,
    description: "Comma-separated bearer keys accepted by the API (several at once for rotation).",
    commands: SERVES_API,
  }),
  metricsPublic: setting({
    env: "PGWAKE_METRICS_PUBLIC",
    flag: "metrics-public",
    switch: true,
    default: true,
    parse: onOff,
    description: "Serve /metrics without an API key.",
    commands: SERVES_API,
  }),
  docsPublic: setting({
    env: "PGWAKE_DOCS_PUBLIC",
    flag: "docs-public",
    switch: true,
    default: true,
    parse: onOff,
    description:
      "Serve /docs and /openapi.json without an API key, so a browser can show them (the docs hold no secrets; calls made from them still need a key).",
    commands: SERVES_API,
  }),
  ui: setting({
    env: "PGWAKE_UI",
    flag: "ui",
    switch: true,
    default: true,
    parse: onOff,
    description:
      "Serve the web dashboard at /ui (its pages hold no data: it reads the API with the key it signs in with).",
    commands: SERVES_API,
  }),
  bodyLimitBytes: setting({
    env: "PGWAKE_BODY_LIMIT",
    flag: "body-limit",
    placeholder: "size",
    default: 1_048_576,
    defaultText: "1mb",
    parse: size,
    description: "Largest request body (bytes, or kb/mb).",
    commands: SERVES_API,
  }),
  batchLimit: setting({
    env: "PGWAKE_BATCH_LIMIT",
    flag: "batch-limit",
    placeholder: "n",
    default: 1_000,
    parse: integer(1, 100_000),
    description: "Most jobs in one POST /jobs/batch.",
    commands: SERVES_API,
  }),
  queues: setting<QueueSetting[] | null>({
    env: "PGWAKE_QUEUES",
    flag: "queues",
    placeholder: "names",
    default: null,
    defaultText: "*",
    parse: queueList,
    description:
      "Queues this worker serves, comma-separated, each optionally with its most slots (critical:4,bulk:12); * serves every queue, including new ones.",
    commands: RUNS_JOBS,
  }),
  concurrency: setting({
    env: "PGWAKE_CONCURRENCY",
    flag: "concurrency",
    placeholder: "n",
    default: 16,
    parse: integer(1, 1_000),
    description: "Jobs run at once by one worker process.",
    commands: RUNS_JOBS,
  }),
  pollIntervalMs: setting({
    env: "PGWAKE_POLL_INTERVAL_MS",
    flag: "poll-interval-ms",
    placeholder: "ms",
    default: 2_000,
    parse: integer(10, 3_600_000),
    description: "Fallback poll interval (jittered ±25%).",
    commands: RUNS_JOBS,
  }),
  claimCooldownMs: setting({
    env: "PGWAKE_CLAIM_COOLDOWN_MS",
    flag: "claim-cooldown-ms",
    placeholder: "ms",
    default: 5,
    parse: integer(0, 10_000),
    description:
      "After a claim that found jobs but had room for more, claim again this much later instead of waiting for a wake-up (0: off).",
    commands: RUNS_JOBS,
  }),
  leaseMs: setting({
    env: "PGWAKE_LEASE_MS",
    flag: "lease-ms",
    placeholder: "ms",
    default: 30_000,
    parse: integer(1_000, 86_400_000),
    description: "How long a claimed job is held without a heartbeat.",
    commands: RUNS_JOBS,
  }),
  heartbeatMs: setting({
    env: "PGWAKE_HEARTBEAT_MS",
    flag: "heartbeat-ms",
    placeholder: "ms",
    default: 10_000,
    parse: integer(100, 3_600_000),
    description: "Lease renewal interval; must be shorter than the lease.",
    commands: RUNS_JOBS,
  }),
  jobTimeoutMs: setting({
    env: "PGWAKE_JOB_TIMEOUT_MS",
    flag: "job-timeout-ms",
    placeholder: "ms",
    default: 300_000,
    parse: integer(1, 86_400_000),
    description: "A handler's time limit unless the job or its task sets one.",
    commands: RUNS_JOBS,
  }),
  retentionMs: setting<number | null>({
    env: "PGWAKE_RETENTION",
    flag: "retention",
    placeholder: "duration",
    default: 7 * UNITS.d!,
    defaultText: "7d",
    parse: duration,
    description:
      "Delete finished jobs after this long (ms, or 30s/15m/12h/7d); 0 or forever keeps them.",
    commands: RUNS_JOBS,
  }),
  notify: setting({
    env: "PGWAKE_NOTIFY",
    flag: "notify",
    switch: true,
    default: true,
    parse: onOff,
    description: "LISTEN/NOTIFY wake-ups; off polls only (PgBouncer in transaction mode).",
    commands: RUNS_JOBS,
  }),
  schedules: setting({
    env: "PGWAKE_SCHEDULES",
    flag: "schedules",
    switch: true,
    default: true,
    parse: onOff,
    description:
      "Fire cron schedules from this process (every worker shares the work; one job per tick).",
    commands: RUNS_JOBS,
  }),
  scheduleOwner: setting({
    env: "PGWAKE_SCHEDULE_OWNER",
    flag: "schedule-owner",
    placeholder: "name",
    default: "default",
    parse: text.regex(NAME, "must be 1-128 of A-Z a-z 0-9 _ . : -"),
    description:
      "Deployment group owning the schedules its tasks declare: give deployments with different task modules sharing a schema different owners.",
    commands: RUNS_JOBS,
  }),
  bufferMs: setting({
    env: "PGWAKE_BUFFER_MS",
    flag: "buffer-ms",
    placeholder: "ms",
    default: 100,
    parse: integer(0, 60_000),
    description:
      "Jobs claimed ahead of free slots, in time: about this many ms of work at the recent completion rate (0: claim only for free slots).",
    commands: RUNS_JOBS,
  }),
  maintenanceIntervalMs: setting({
    env: "PGWAKE_MAINTENANCE_INTERVAL_MS",
    flag: "maintenance-interval-ms",
    placeholder: "ms",
    default: 5_000,
    parse: integer(0, 3_600_000),
    description:
      "How often the reaper and retention run (jittered; once across the fleet at a time); 0 turns maintenance off in this process.",
    commands: RUNS_JOBS,
  }),
  listenUrl: setting<string | undefined>({
    env: "PGWAKE_LISTEN_URL",
    flag: "listen-url",
    placeholder: "url",
    default: undefined,
    defaultText: "(DATABASE_URL)",
    parse: text.refine((value) => /^postgres(ql)?:\/\//.test(value) && URL.canParse(value), {
      message: "must be a postgres:// or postgresql:// URL",
    }),
    secret: true,
    description:
      "A direct connection (bypassing the pooler) for the worker's LISTEN connection and for migrations, when DATABASE_URL goes through a transaction-mode pooler.",
    commands: ["start", "api", "worker", "migrate"],
  }),
  pooler: setting({
    env: "PGWAKE_POOLER",
    flag: "pooler",
    switch: true,
    default: false,
    parse: onOff,
    description:
      "DATABASE_URL goes through a transaction-mode pooler (PgBouncer): no startup parameters, no named prepared statements.",
    commands: EVERY,
  }),
  networkTimeoutMs: setting({
    env: "PGWAKE_NETWORK_TIMEOUT_MS",
    flag: "network-timeout-ms",
    placeholder: "ms",
    default: DEFAULT_NETWORK_TIMEOUT_MS,
    parse: integer(1_000, 3_600_000),
    description:
      "A statement with no answer after this long is abandoned and its connection replaced; idle connections are probed by TCP keepalive within about the same time.",
    commands: EVERY,
  }),
  poolSize: setting({
    env: "PGWAKE_POOL_SIZE",
    flag: "pool-size",
    placeholder: "n",
    default: 4,
    parse: integer(1, 100),
    description:
      "Most connections in a worker's pool, besides its LISTEN connection (the connection budget: README); 1 serialises claims, outcome writes and heartbeats.",
    commands: RUNS_JOBS,
  }),
  healthPort: setting<number | undefined>({
    env: "PGWAKE_HEALTH_PORT",
    flag: "health-port",
    placeholder: "port",
    default: undefined,
    defaultText: "(off)",
    parse: integer(0, 65_535),
    description:
      "Serve the worker's /health, /ready and /metrics on this port (pgwake worker; pgwake start serves them with its API).",
    commands: ["worker"],
  }),
  healthHost: setting({
    env: "PGWAKE_HEALTH_HOST",
    flag: "health-host",
    placeholder: "host",
    default: "0.0.0.0",
    parse: text.min(1),
    description: "Bind address of the worker's health port.",
    commands: ["worker"],
  }),
  tasks: setting<string | undefined>({
    env: "PGWAKE_TASKS",
    flag: "tasks",
    placeholder: "module",
    default: undefined,
    defaultText: "(none)",
    parse: text.min(1),
    path: true,
    description: "Module (.ts or .js) exporting task definitions.",
    commands: LOADS_TASKS,
  }),
  builtinTasks: setting<BuiltinGroup[]>({
    env: "PGWAKE_BUILTIN_TASKS",
    flag: "builtin-tasks",
    placeholder: "groups",
    negatedValue: "none",
    default: ["demo"],
    parse: builtinGroups,
    description:
      "Built-in tasks to register: demo (demo.echo, demo.sleep, demo.fail), http (http.request: calls any URL it is given, so only with API keys), a list like demo,http, all, or none.",
    commands: LOADS_TASKS,
  }),
  unknownTasks: setting<UnknownTaskPolicy>({
    env: "PGWAKE_UNKNOWN_TASKS",
    flag: "unknown-tasks",
    placeholder: "policy",
    default: "refuse",
    parse: choice(UNKNOWN_TASK_POLICIES),
    description:
      "A submitted task this process does not define (built-ins and --tasks): refuse it (UNKNOWN_TASK), or warn and accept it (tasks run by workers elsewhere).",
    commands: SUBMITS,
  }),
  shutdownGraceMs: setting({
    env: "PGWAKE_SHUTDOWN_GRACE_MS",
    flag: "shutdown-grace-ms",
    placeholder: "ms",
    default: 10_000,
    parse: integer(0, 3_600_000),
    description: "On SIGTERM, how long running jobs may finish before they are handed back.",
    commands: LONG_RUNNING,
  }),
  logLevel: setting<LogLevel>({
    env: "PGWAKE_LOG_LEVEL",
    flag: "log-level",
    placeholder: "level",
    default: "info",
    parse: choice(LOG_LEVELS),
    description: "fatal, error, warn, info, debug, trace or silent.",
    commands: EVERY,
  }),
  logFormat: setting<"auto" | "json" | "pretty">({
    env: "PGWAKE_LOG_FORMAT",
    flag: "log-format",
    placeholder: "format",
    default: "auto",
    parse: choice(["auto", "json", "pretty"]),
    description: "json, pretty (needs pino-pretty) or auto (pretty on a terminal when available).",
    commands: EVERY,
  }),
} as const;

export type SettingKey = keyof typeof SETTINGS;

/** The value type of a setting. */
export type SettingValue<K extends SettingKey> = (typeof SETTINGS)[K]["default"];

/** Every setting's value: what the `pgwake` command runs with. */
export type Config = { -readonly [K in SettingKey]: SettingValue<K> };

/** One row of the table, with its key. */
export type SettingEntry = SettingSpec<unknown> & { key: SettingKey };

/** The table as a list, in declaration order. */
export const SETTING_LIST: readonly SettingEntry[] = Object.entries(SETTINGS).map(
  ([key, spec]) => ({ ...(spec as SettingSpec<unknown>), key: key as SettingKey }),
);

/**
 * Each setting's default value. The worker's and the HTTP API's own option defaults are meant
 * to read these (`SETTING_DEFAULTS.leaseMs`, …), so a default is written once.
 */
export const SETTING_DEFAULTS: Readonly<Config> = Object.freeze(
  Object.fromEntries(SETTING_LIST.map((s) => [s.key, s.default])) as Config,
);

/** A check across settings; `key` is the setting it is reported against. */
export interface SettingCheck {
  key: SettingKey;
  /** Checked only when these parsed cleanly. */
  needs: readonly SettingKey[];
  ok: (config: Config) => boolean;
  message: string;
}

export const SETTING_CHECKS: readonly SettingCheck[] = [
  {
    key: "heartbeatMs",
    needs: ["heartbeatMs", "leaseMs"],
    ok: (config) => config.heartbeatMs < config.leaseMs,
    message: "must be shorter than the lease (PGWAKE_LEASE_MS)",
  },
];

/** How `--help` and the docs show a setting's default. */
export function defaultText(entry: SettingEntry): string {
  if (entry.defaultText !== undefined) return entry.defaultText;
  const value = entry.default;
  if (typeof value === "boolean") return value ? "on" : "off";
  if (Array.isArray(value)) return value.join(",");
  return String(value);
}

/** The settings a command reads, in table order. */
export function settingsOf(command: CommandName): SettingEntry[] {
  return SETTING_LIST.filter((s) => s.commands.includes(command));
}
