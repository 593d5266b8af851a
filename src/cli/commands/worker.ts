import { serveWorkerHealth } from "../../worker/healthServer.ts";
import { openDatabase } from "../database.ts";
import { CommandError, UsageError } from "../errors.ts";
import { buildRegistry } from "../task-module.ts";
import { type CommandContext, openPgwake, prepareSchema, startWorker } from "./shared.ts";

/** `pgwake worker`: claims and runs jobs until a signal, then drains. */
export async function worker({ config, logger, lifecycle }: CommandContext): Promise<number> {
  const tasks = await buildRegistry(config);
  if (tasks.size === 0) {
    throw new UsageError(
      "no tasks to run: give --tasks (or PGWAKE_TASKS), or turn built-in tasks on (PGWAKE_BUILTIN_TASKS=demo)",
    );
  }
  const database = await openDatabase(config, logger, lifecycle);
  lifecycle.checkpoint();
  const pgwake = openPgwake(database, config, tasks, logger, lifecycle);
  await prepareSchema(pgwake, database.embedded ? "migrate" : "require", database, logger);
  // The client was needed for the schema check only: its connection goes, so the process holds
  // exactly what the connection budget says, 1 + PGWAKE_POOL_SIZE (the worker has its own pool).
  await pgwake.close();
  lifecycle.checkpoint();
  const running = await startWorker(pgwake, database, config, lifecycle);
  if (config.healthPort !== undefined) {
    const health = await serveWorkerHealth(running, {
      port: config.healthPort,
      host: config.healthHost,
    }).catch((error: NodeJS.ErrnoException) => {
      throw new CommandError(
        error.code === "EADDRINUSE"
          ? `health port ${config.healthPort} is already in use: set PGWAKE_HEALTH_PORT to a free port`
          : `cannot serve the health port ${config.healthHost}:${config.healthPort}: ${error.message}`,
        { cause: error },
      );
    });
    lifecycle.onCleanup("health server", () => health.close());
    logger.info({ url: health.url }, "worker health, readiness and metrics served");
  }
  await lifecycle.stopRequested;
  return 0;
}
