import { readFileSync } from "node:fs";
import { type Config, ConfigError, loadConfig, redactConfig } from "../config.ts";
import { EmbeddedPostgresError } from "../embedded.ts";
import { PgwakeError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import {
  COMMANDS,
  type CommandSpec,
  commandHelp,
  findCommand,
  GroupHelp,
  groupHelp,
  parseCommand,
  topLevelHelp,
} from "./args.ts";
import type { CommandContext } from "./commands/shared.ts";

const SCHEDULE_COMMAND_IDS = Object.keys(COMMANDS).filter((id) => id.startsWith("schedules "));

import { CommandError, EXIT, UsageError } from "./errors.ts";
import { Lifecycle, StopRequested } from "./lifecycle.ts";
import { createCliLogger, flushLogger } from "./logging.ts";

type Runner = (ctx: CommandContext) => Promise<number>;

/** Each command's code, loaded when it runs: `pgwake jobs list` does not load the HTTP API. */
const RUNNERS: Record<string, () => Promise<Runner>> = {
  start: async () => (await import("./commands/start.ts")).start,
  api: async () => (await import("./commands/api.ts")).api,
  worker: async () => (await import("./commands/worker.ts")).worker,
  migrate: async () => (await import("./commands/migrate.ts")).migrate,
  enqueue: async () => (await import("./commands/enqueue.ts")).enqueue,
  "jobs list": async () => (await import("./commands/jobs.ts")).jobsList,
  "jobs get": async () => (await import("./commands/jobs.ts")).jobsGet,
  "jobs retry": async () => (await import("./commands/jobs.ts")).jobsRetry,
  "jobs cancel": async () => (await import("./commands/jobs.ts")).jobsCancel,
  "queues list": async () => (await import("./commands/queues.ts")).queuesList,
  "queues pause": async () => (await import("./commands/queues.ts")).queuesPause,
  "queues resume": async () => (await import("./commands/queues.ts")).queuesResume,
  "queues limits": async () => (await import("./commands/queues.ts")).queuesLimits,
  "queues keys": async () => (await import("./commands/queues.ts")).queuesKeys,
  stats: async () => (await import("./commands/stats.ts")).stats,
  ...Object.fromEntries(
    SCHEDULE_COMMAND_IDS.map((id) => [
      id,
      async () => (await import("./commands/schedules.ts")).schedulesRunner(id),
    ]),
  ),
};
/** Commands that run until a signal: a signal is their normal, clean end. */
const LONG_RUNNING = new Set(["start", "api", "worker"]);

/** The pgwake version, from package.json. */
export function version(): string {
  const text = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

/**
 * Runs `pgwake <argv…>` and resolves with the exit code: 0 done (or stopped cleanly by a signal),
 * 1 failed, 2 bad command line or configuration.
 */
export async function run(argv: string[]): Promise<number> {
  const [name] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    const out = name === undefined ? process.stderr : process.stdout;
    out.write(topLevelHelp(version()));
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "-v" || name === "--version") {
    process.stdout.write(`${version()}\n`);
    return EXIT.ok;
  }
  let found: { spec: CommandSpec; args: string[] };
  try {
    found = findCommand(argv);
  } catch (error) {
    if (error instanceof GroupHelp) {
      process.stdout.write(groupHelp(error.group));
      return EXIT.ok;
    }
    if (error instanceof UsageError) return usageFailure("pgwake", error.message);
    throw error;
  }
  const { spec, args } = found;
  const command = spec.id;
  let parsed: ReturnType<typeof parseCommand>;
  let config: Config;
  try {
    parsed = parseCommand(spec, args);
    if (parsed.help) {
      process.stdout.write(commandHelp(spec));
      return EXIT.ok;
    }
    config = loadConfig(process.env, parsed.flags);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
      return usageFailure(`pgwake ${command}`, error.message);
    }
    throw error;
  }

  // Services (and migrate) log on stdout; commands that print a result keep stdout for it.
  const logsOnStdout = LONG_RUNNING.has(command) || command === "migrate";
  const logger = createCliLogger(config, { toStderr: !logsOnStdout });
  const lifecycle = new Lifecycle(logger);
  lifecycle.installSignalHandlers();
  logger[logsOnStdout ? "info" : "debug"](
    { command, version: version(), pid: process.pid, config: redactConfig(config) },
    `pgwake ${command}: effective configuration`,
  );

  let code: number;
  try {
    const runner = await RUNNERS[command]!();
    code = await runner({
      config,
      logger,
      lifecycle,
      parsed,
      print: (text) => process.stdout.write(text),
    });
  } catch (error) {
    code = reportFailure(command, error, logger);
  }
  const clean = await lifecycle.cleanup();
  if (code === EXIT.ok && !clean) code = EXIT.failure;
  if (LONG_RUNNING.has(command)) {
    logger.info({ exitCode: code }, code === EXIT.ok ? "stopped cleanly" : "stopped");
  }
  await flushLogger(logger);
  return code;
}

function usageFailure(prefix: string, message: string): number {
  const command = prefix === "pgwake" ? "pgwake" : prefix;
  process.stderr.write(`${prefix}: ${message}\nRun \`${command} --help\` for usage.\n`);
  return EXIT.usage;
}

/** Logs why a command failed and picks its exit code. */
function reportFailure(command: string, error: unknown, logger: Logger): number {
  if (error instanceof StopRequested) {
    logger.info("stopped while starting");
    return LONG_RUNNING.has(command) ? EXIT.ok : EXIT.failure;
  }
  if (error instanceof UsageError || error instanceof ConfigError) {
    return usageFailure(`pgwake ${command}`, error.message);
  }
  const known =
    error instanceof CommandError ||
    error instanceof EmbeddedPostgresError ||
    error instanceof PgwakeError;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof EmbeddedPostgresError && error.exitCode === EXIT.usage) {
    // Nothing started: a setting (or the place pgwake runs from) has to change first.
    logger.fatal({ code: error.code }, message);
    return usageFailure(`pgwake ${command}`, message);
  }
  // Known failures are explained by their message; anything else gets its stack in the log.
  logger.fatal(known ? { code: (error as { code?: string }).code } : { err: error }, message);
  process.stderr.write(`pgwake ${command}: ${message}\n`);
  return EXIT.failure;
}
