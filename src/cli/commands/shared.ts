import { Pgwake } from "../../client.ts";
import { type Config, redactUrl } from "../../config.ts";
import { PgwakeError } from "../../errors.ts";
import type { Logger } from "../../logger.ts";
import { TaskRegistry } from "../../tasks.ts";
import type { Worker } from "../../worker/worker.ts";
import type { ParsedCommand } from "../args.ts";
import { type Database, openDatabase } from "../database.ts";
import { CommandError, UsageError } from "../errors.ts";
import type { Lifecycle } from "../lifecycle.ts";

/** What every command gets from `main`. */
export interface CommandContext {
  config: Config;
  logger: Logger;
  lifecycle: Lifecycle;
  parsed: ParsedCommand;
  /** Where a command prints its result (stdout). */
  print: (text: string) => void;
}

/** A Pgwake client on the database, closed by the lifecycle. */
export function openPgwake(
  database: Database,
  config: Config,
  tasks: TaskRegistry,
  logger: Logger,
  lifecycle: Lifecycle,
): Pgwake {
  const pgwake = new Pgwake({
    connectionString: database.connectionString,
    schema: config.schema,
    tasks,
    unknownTasks: config.unknownTasks,
    pooler: config.pooler,
    networkTimeoutMs: config.networkTimeoutMs,
    logger,
  });
  lifecycle.onCleanup("database pool", () => pgwake.close());
  return pgwake;
}

/**
 * Brings the schema to where this code needs it, or checks that it is there.
 * `migrate` applies pending migrations; `require` refuses an old or newer schema; `report` only
 * warns (the API's /ready says 503 until someone migrates).
 */
export async function prepareSchema(
  pgwake: Pgwake,
  mode: "migrate" | "require" | "report",
  database: Database,
  logger: Logger,
): Promise<void> {
  try {
    if (mode === "migrate") {
      const { applied, version } = await migrateOver(pgwake, database, logger);
      logger.info({ schema: pgwake.schema, version, applied }, "database schema is current");
      return;
    }
    const state = await pgwake.schemaState();
    if (state.current === state.latest) return;
    const message =
      state.current < state.latest
        ? `schema "${pgwake.schema}" is at version ${state.current}, this pgwake needs ${state.latest}: run \`pgwake migrate\` first`
        : `schema "${pgwake.schema}" is at version ${state.current}, newer than this pgwake knows (${state.latest}): upgrade pgwake`;
    if (mode === "report") logger.warn({ schema: pgwake.schema, ...state }, message);
    else throw new CommandError(message);
  } catch (error) {
    throw describeDatabaseError(error, database);
  }
}

/**
 * Migrates; behind a transaction-mode pooler over the direct connection (migrations hold a
 * session lock, which a pooler cannot keep).
 */
async function migrateOver(
  pgwake: Pgwake,
  database: Database,
  logger: Logger,
): Promise<{ applied: number[]; version: number }> {
  if (!pgwake.pooler) return pgwake.migrate();
  if (!database.directConnectionString) {
    throw new CommandError(
      "behind a pooler (PGWAKE_POOLER=on), migrations need a direct connection: set PGWAKE_LISTEN_URL to one, or run `pgwake migrate` with a DATABASE_URL that bypasses the pooler",
    );
  }
  const direct = new Pgwake({
    connectionString: database.directConnectionString,
    schema: pgwake.schema,
    logger,
  });
  try {
    return await direct.migrate();
  } finally {
    await direct.close();
  }
}

/** Turns a connection failure into a message that names the database (password hidden). */
export function describeDatabaseError(error: unknown, database: Database): unknown {
  if (error instanceof CommandError || error instanceof UsageError) return error;
  if (error instanceof PgwakeError) return new CommandError(error.message, { cause: error });
  const code = (error as { code?: string }).code;
  const message = (error as Error).message || code || String(error);
  return new CommandError(
    `database ${redactUrl(database.connectionString)}: ${message}${code && !message.includes(code) ? ` (${code})` : ""}`,
    { cause: error },
  );
}

/**
 * The database and a Pgwake client for a command that reads or changes jobs and queues: the
 * embedded database is migrated, a DATABASE_URL one must already be current.
 */
export async function openForCommand(
  { config, logger, lifecycle }: Pick<CommandContext, "config" | "logger" | "lifecycle">,
  tasks: TaskRegistry = new TaskRegistry(),
): Promise<{ pgwake: Pgwake; database: Database }> {
  const database = await openDatabase(config, logger, lifecycle);
  lifecycle.checkpoint();
  const pgwake = openPgwake(database, config, tasks, logger, lifecycle);
  await prepareSchema(pgwake, database.embedded ? "migrate" : "require", database, logger);
  return { pgwake, database };
}

/** Runs a database call, turning a connection failure into a message naming the database. */
export async function withDatabase<T>(database: Database, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw describeDatabaseError(error, database);
  }
}

/** Starts a worker with the configured settings; the lifecycle drains it on stop. */
export async function startWorker(
  pgwake: Pgwake,
  database: Database,
  config: Config,
  lifecycle: Lifecycle,
): Promise<Worker> {
  const worker = pgwake.worker({
    connectionString: database.connectionString,
    ...(database.directConnectionString
      ? { listenConnectionString: database.directConnectionString }
      : {}),
    ...(config.queues ? { queues: config.queues } : {}),
    concurrency: config.concurrency,
    notify: config.notify,
    schedules: config.schedules,
    scheduleOwner: config.scheduleOwner,
    pollIntervalMs: config.pollIntervalMs,
    claimCooldownMs: config.claimCooldownMs,
    bufferMs: config.bufferMs,
    leaseMs: config.leaseMs,
    heartbeatMs: config.heartbeatMs,
    defaultTimeoutMs: config.jobTimeoutMs,
    retentionMs: config.retentionMs,
    maintenanceIntervalMs: config.maintenanceIntervalMs,
    networkTimeoutMs: config.networkTimeoutMs,
    poolSize: config.poolSize,
    pooler: config.pooler,
  });
  lifecycle.onCleanup("worker", () => worker.stop({ graceMs: config.shutdownGraceMs }));
  try {
    await worker.start();
  } catch (error) {
    throw describeDatabaseError(error, database);
  }
  return worker;
}
