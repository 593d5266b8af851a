import { TaskRegistry } from "../../tasks.ts";
import { openDatabase } from "../database.ts";
import { type CommandContext, openPgwake, prepareSchema } from "./shared.ts";

/** `pgwake migrate`: applies pending migrations and exits. */
export async function migrate({ config, logger, lifecycle }: CommandContext): Promise<number> {
  const database = await openDatabase(config, logger, lifecycle);
  lifecycle.checkpoint();
  const pgwake = openPgwake(database, config, new TaskRegistry(), logger, lifecycle);
  await prepareSchema(pgwake, "migrate", database, logger);
  return 0;
}
