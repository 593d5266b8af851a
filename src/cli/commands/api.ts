import { openDatabase } from "../database.ts";
import { buildRegistry } from "../task-module.ts";
import { curlHint, startApi } from "./serve-api.ts";
import { type CommandContext, openPgwake, prepareSchema } from "./shared.ts";

/** `pgwake api`: the HTTP API only, until a signal. */
export async function api({ config, logger, lifecycle }: CommandContext): Promise<number> {
  const tasks = await buildRegistry(config);
  const database = await openDatabase(config, logger, lifecycle);
  lifecycle.checkpoint();
  const pgwake = openPgwake(database, config, tasks, logger, lifecycle);
  await prepareSchema(pgwake, database.embedded ? "migrate" : "report", database, logger);
  lifecycle.checkpoint();
  const server = await startApi(pgwake, config, logger, lifecycle);
  logger.info(
    { url: server.url, tasks: tasks.names() },
    `pgwake API is ready at ${server.url}; try: ${curlHint(server.url)}`,
  );
  await lifecycle.stopRequested;
  return 0;
}
