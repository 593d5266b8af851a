import { openDatabase } from "../database.ts";
import { UsageError } from "../errors.ts";
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
  lifecycle.checkpoint();
  await startWorker(pgwake, database, config, lifecycle);
  await lifecycle.stopRequested;
  return 0;
}
