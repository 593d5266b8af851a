import { openDatabase } from "../database.ts";
import { buildRegistry } from "../task-module.ts";
import { curlHint, startApi } from "./serve-api.ts";
import { type CommandContext, openPgwake, prepareSchema, startWorker } from "./shared.ts";

/** `pgwake start`: migrate, then the API and a worker in one process, until a signal. */
export async function start({ config, logger, lifecycle }: CommandContext): Promise<number> {
  const tasks = await buildRegistry(config);
  const database = await openDatabase(config, logger, lifecycle);
  lifecycle.checkpoint();
  const pgwake = openPgwake(database, config, tasks, logger, lifecycle);
  await prepareSchema(pgwake, "migrate", database, logger);
  lifecycle.checkpoint();
  const worker =
    tasks.size > 0 ? await startWorker(pgwake, database, config, lifecycle) : undefined;
  if (!worker) logger.warn("no tasks registered: running the API without a worker");
  lifecycle.checkpoint();
  // One /metrics for the process: the API's and the worker's.
  const api = await startApi(
    pgwake,
    config,
    logger,
    lifecycle,
    worker ? [worker.metrics.registry] : [],
  );
  logger.info(
    { url: api.url, tasks: tasks.names(), queues: config.queues, workerId: worker?.id },
    `pgwake is ready at ${api.url}${config.ui ? ` (dashboard: ${api.url.replace("://0.0.0.0:", "://localhost:")}/ui)` : ""}; try: ${curlHint(api.url)}`,
  );
  await lifecycle.stopRequested;
  return 0;
}
