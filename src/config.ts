import { resolve } from "node:path";
import {
  type Config,
  SETTING_CHECKS,
  SETTING_LIST,
  type SettingEntry,
  type SettingKey,
} from "./settings.ts";

export {
  BUILTIN_GROUPS,
  type BuiltinGroup,
  type Config,
  LOG_LEVELS,
  type LogLevel,
  SETTING_DEFAULTS,
  SETTING_LIST,
  SETTINGS,
  type SettingEntry,
  type SettingKey,
  type UnknownTaskPolicy,
} from "./settings.ts";

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

/** Raw values as given: flags (already typed by parseArgs) take precedence over the environment. */
export type FlagValues = Partial<Record<SettingKey, string | boolean | undefined>>;

/**
 * Builds the configuration from the environment and flags (see src/settings.ts). Each setting
 * comes from its flag, else its environment variable (empty counts as unset), else its default.
 * Throws `ConfigError` listing every invalid setting at once.
 */
export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  flags: FlagValues = {},
  cwd: string = process.cwd(),
): Config {
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  const broken = new Set<SettingKey>();
  const origin = (s: SettingEntry) => (flags[s.key] !== undefined ? `--${s.flag}` : s.env);
  for (const s of SETTING_LIST) {
    const fromEnv = env[s.env];
    const given =
      flags[s.key] ?? (fromEnv !== undefined && fromEnv.trim() !== "" ? fromEnv : undefined);
    if (given === undefined) {
      values[s.key] = s.default;
      continue;
    }
    const parsed = s.parse.safeParse(given);
    if (!parsed.success) {
      broken.add(s.key);
      // A database URL may hold a password: never echo it, even when it is wrong.
      const shown = s.secret ? "" : ` (got ${JSON.stringify(given)})`;
      for (const issue of parsed.error.issues) {
        problems.push(`${origin(s)}: ${issue.message}${shown}`);
      }
      continue;
    }
    values[s.key] = parsed.data;
  }
  const config = values as Config;
  for (const check of SETTING_CHECKS) {
    if (check.needs.some((key) => broken.has(key))) continue;
    if (!check.ok(config)) {
      const s = SETTING_LIST.find((entry) => entry.key === check.key)!;
      problems.push(`${origin(s)}: ${check.message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  for (const s of SETTING_LIST) {
    const value = values[s.key];
    if (s.path && typeof value === "string") values[s.key] = resolve(cwd, value);
  }
  return config;
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
