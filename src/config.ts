import { resolve } from "node:path";
import { z } from "zod";
import { SCHEMA_PATTERN } from "./db/sql.ts";

/**
 * Everything the `pgwake` command can be told, parsed once at start. Each setting comes from a
 * flag, else from its environment variable, else from its default; invalid values are all
 * reported together (`ConfigError.problems`) so a broken deployment is fixed in one round trip.
 */
export interface Config {
  /** Postgres to use; unset means an embedded Postgres in `dataDir`. */
  databaseUrl: string | undefined;
  port: number;
  host: string;
  schema: string;
  queues: string[];
  concurrency: number;
  pollIntervalMs: number;
  claimCooldownMs: number;
  leaseMs: number;
  heartbeatMs: number;
  jobTimeoutMs: number;
  /** Terminal jobs are deleted this long after they finished; null keeps them forever. */
  retentionMs: number | null;
  notify: boolean;
  logLevel: LogLevel;
  logFormat: "auto" | "json" | "pretty";
  /** A module exporting task definitions, resolved against the working directory. */
  tasks: string | undefined;
  builtinTasks: boolean;
  apiKeys: string[];
  bodyLimitBytes: number;
  batchLimit: number;
  metricsPublic: boolean;
  shutdownGraceMs: number;
  /** The embedded Postgres data directory (absolute). */
  dataDir: string;
  embeddedPort: number;
}

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** One setting: its environment variable, its flag, its default (as text) and what it means. */
export interface Setting {
  key: keyof Config;
  env: string;
  flag: string;
  /** The flag is a switch (`--x` / `--no-x`) rather than taking a value. */
  boolean?: boolean;
  default: string;
  description: string;
}

/** Every setting, in the order of the README's table and of `--help`. */
export const SETTINGS: readonly Setting[] = [
  {
    key: "databaseUrl",
    env: "DATABASE_URL",
    flag: "database-url",
    default: "(embedded Postgres)",
    description: "Postgres connection string. Unset: start (or reuse) an embedded Postgres.",
  },
  { key: "port", env: "PORT", flag: "port", default: "3000", description: "HTTP API port." },
  {
    key: "host",
    env: "HOST",
    flag: "host",
    default: "127.0.0.1",
    description: "HTTP API bind address (the container image sets 0.0.0.0).",
  },
  {
    key: "schema",
    env: "PGWAKE_SCHEMA",
    flag: "schema",
    default: "pgwake",
    description: "Schema holding pgwake's tables.",
  },
  {
    key: "queues",
    env: "PGWAKE_QUEUES",
    flag: "queues",
    default: "default",
    description: "Comma-separated queues this worker serves.",
  },
  {
    key: "concurrency",
    env: "PGWAKE_CONCURRENCY",
    flag: "concurrency",
    default: "16",
    description: "Jobs run at once by one worker process.",
  },
  {
    key: "pollIntervalMs",
    env: "PGWAKE_POLL_INTERVAL_MS",
    flag: "poll-interval-ms",
    default: "2000",
    description: "Fallback poll interval (jittered ±25%).",
  },
  {
    key: "claimCooldownMs",
    env: "PGWAKE_CLAIM_COOLDOWN_MS",
    flag: "claim-cooldown-ms",
    default: "5",
    description:
      "After a claim that found jobs but had room for more, claim again this much later instead of waiting for a wake-up (0: off).",
  },
  {
    key: "leaseMs",
    env: "PGWAKE_LEASE_MS",
    flag: "lease-ms",
    default: "30000",
    description: "How long a claimed job is held without a heartbeat.",
  },
  {
    key: "heartbeatMs",
    env: "PGWAKE_HEARTBEAT_MS",
    flag: "heartbeat-ms",
    default: "10000",
    description: "Lease renewal interval; must be shorter than the lease.",
  },
  {
    key: "jobTimeoutMs",
    env: "PGWAKE_JOB_TIMEOUT_MS",
    flag: "job-timeout-ms",
    default: "300000",
    description: "A handler's time limit unless the job or its task sets one.",
  },
  {
    key: "retentionMs",
    env: "PGWAKE_RETENTION",
    flag: "retention",
    default: "7d",
    description:
      "Delete finished jobs after this long (ms, or 30s/15m/12h/7d); 0 or forever keeps them.",
  },
  {
    key: "notify",
    env: "PGWAKE_NOTIFY",
    flag: "notify",
    boolean: true,
    default: "on",
    description: "LISTEN/NOTIFY wake-ups; off polls only (PgBouncer in transaction mode).",
  },
  {
    key: "logLevel",
    env: "PGWAKE_LOG_LEVEL",
    flag: "log-level",
    default: "info",
    description: "fatal, error, warn, info, debug, trace or silent.",
  },
  {
    key: "logFormat",
    env: "PGWAKE_LOG_FORMAT",
    flag: "log-format",
    default: "auto",
    description: "json, pretty (needs pino-pretty) or auto (pretty on a terminal when available).",
  },
  {
    key: "tasks",
    env: "PGWAKE_TASKS",
    flag: "tasks",
    default: "(none)",
    description: "Module (.ts or .js) exporting task definitions.",
  },
  {
    key: "builtinTasks",
    env: "PGWAKE_BUILTIN_TASKS",
    flag: "builtin-tasks",
    boolean: true,
    default: "on",
    description: "Register http.request, demo.echo, demo.sleep and demo.fail.",
  },
  {
    key: "apiKeys",
    env: "PGWAKE_API_KEYS",
    flag: "api-keys",
    default: "(none: open API)",
    description: "Comma-separated bearer keys accepted by the API.",
  },
  {
    key: "bodyLimitBytes",
    env: "PGWAKE_BODY_LIMIT",
    flag: "body-limit",
    default: "1mb",
    description: "Largest request body (bytes, or kb/mb).",
  },
  {
    key: "batchLimit",
    env: "PGWAKE_BATCH_LIMIT",
    flag: "batch-limit",
    default: "1000",
    description: "Most jobs in one POST /jobs/batch.",
  },
  {
    key: "metricsPublic",
    env: "PGWAKE_METRICS_PUBLIC",
    flag: "metrics-public",
    boolean: true,
    default: "on",
    description: "Serve /metrics without an API key.",
  },
  {
    key: "shutdownGraceMs",
    env: "PGWAKE_SHUTDOWN_GRACE_MS",
    flag: "shutdown-grace-ms",
    default: "10000",
    description: "On SIGTERM, how long running jobs may finish before they are handed back.",
  },
  {
    key: "dataDir",
    env: "PGWAKE_DATA_DIR",
    flag: "data-dir",
    default: "./.pgwake/postgres",
    description: "Embedded Postgres data directory (only without DATABASE_URL).",
  },
  {
    key: "embeddedPort",
    env: "PGWAKE_EMBEDDED_PORT",
    flag: "embedded-port",
    default: "54329",
    description: "Embedded Postgres port (only without DATABASE_URL).",
  },
];

/** Invalid configuration; `problems` names every bad setting with where it came from. */
export class ConfigError extends Error {
  readonly code = "INVALID_CONFIG";
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

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

const duration = text.toLowerCase().transform((value, ctx) => {
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

const FIELDS = {
  databaseUrl: text
    .refine((value) => /^postgres(ql)?:\/\//.test(value) && URL.canParse(value), {
      message: "must be a postgres:// or postgresql:// URL",
    })
    .optional(),
  port: integer(0, 65_535).default(3_000),
  host: text.min(1).default("127.0.0.1"),
  schema: text
    .regex(SCHEMA_PATTERN, {
      message: "must be a lower-case identifier (letters, digits, _; at most 63)",
    })
    .default("pgwake"),
  queues: list
    .pipe(
      z
        .array(z.string().regex(NAME, { message: "queue names use letters, digits, _ . : -" }))
        .min(1, { message: "must name at least one queue" }),
    )
    .default(["default"]),
  concurrency: integer(1, 1_000).default(16),
  pollIntervalMs: integer(10, 3_600_000).default(2_000),
  claimCooldownMs: integer(0, 10_000).default(5),
  leaseMs: integer(1_000, 86_400_000).default(30_000),
  heartbeatMs: integer(100, 3_600_000).default(10_000),
  jobTimeoutMs: integer(1, 86_400_000).default(300_000),
  retentionMs: duration.default(7 * UNITS.d!),
  notify: onOff.default(true),
  logLevel: text
    .toLowerCase()
    .pipe(z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(", ")}` }))
    .default("info"),
  logFormat: text
    .toLowerCase()
    .pipe(z.enum(["auto", "json", "pretty"], { error: "must be auto, json or pretty" }))
    .default("auto"),
  tasks: text.min(1).optional(),
  builtinTasks: onOff.default(true),
  apiKeys: list.default([]),
  bodyLimitBytes: size.default(1_048_576),
  batchLimit: integer(1, 100_000).default(1_000),
  metricsPublic: onOff.default(true),
  shutdownGraceMs: integer(0, 3_600_000).default(10_000),
  dataDir: text.min(1).default("./.pgwake/postgres"),
  embeddedPort: integer(1, 65_535).default(54_329),
};
const LEASE_PAIR = z.object({ leaseMs: FIELDS.leaseMs, heartbeatMs: FIELDS.heartbeatMs });
const SHAPE = z.object(FIELDS).refine((config) => config.heartbeatMs < config.leaseMs, {
  path: ["heartbeatMs"],
  message: "must be shorter than the lease (PGWAKE_LEASE_MS)",
  // Checked even when other settings are invalid, so every problem is reported at once.
  when: (payload) => LEASE_PAIR.safeParse(payload.value).success,
});

/** Raw values as given: flags (already typed by parseArgs) take precedence over the environment. */
export type FlagValues = Partial<Record<keyof Config, string | boolean | undefined>>;

/**
 * Builds the configuration from the environment and flags. Empty environment variables count as
 * unset. Throws `ConfigError` listing every invalid setting at once.
 */
export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  flags: FlagValues = {},
  cwd: string = process.cwd(),
): Config {
  const raw: Record<string, unknown> = {};
  const origin = new Map<string, string>();
  for (const setting of SETTINGS) {
    const flag = flags[setting.key];
    const fromEnv = env[setting.env];
    if (flag !== undefined) {
      raw[setting.key] = flag;
      origin.set(setting.key, `--${setting.flag}`);
    } else if (fromEnv !== undefined && fromEnv.trim() !== "") {
      raw[setting.key] = fromEnv;
      origin.set(setting.key, setting.env);
    } else {
      origin.set(setting.key, setting.env);
    }
  }
  const parsed = SHAPE.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      const where = origin.get(key) ?? key;
      const given = raw[key];
      const shown =
        given === undefined ? "" : ` (got ${JSON.stringify(key === "databaseUrl" ? "…" : given)})`;
      return `${where}: ${issue.message}${shown}`;
    });
    throw new ConfigError(problems);
  }
  const config = parsed.data;
  return {
    ...config,
    databaseUrl: config.databaseUrl,
    tasks: config.tasks === undefined ? undefined : resolve(cwd, config.tasks),
    dataDir: resolve(cwd, config.dataDir),
  };
}

/** The configuration as it may be logged: the database password and the API keys hidden. */
export function redactConfig(config: Config): Record<string, unknown> {
  const { databaseUrl, apiKeys, ...rest } = config;
  return {
    // Not named databaseUrl: the root logger would blank the whole value, host included.
    database: databaseUrl === undefined ? "embedded" : redactUrl(databaseUrl),
    ...rest,
    apiKeys: apiKeys.map(() => "[redacted]"),
  };
}

/** A connection string with its password replaced. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "redacted";
    return parsed.toString();
  } catch {
    return "[unparseable URL redacted]";
  }
}
