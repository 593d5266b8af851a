import type { Config } from "../config.ts";
import { redactUrl } from "../config.ts";
import { startEmbeddedPostgres } from "../embedded.ts";
import type { Logger } from "../logger.ts";
import type { Lifecycle } from "./lifecycle.ts";

/** The Postgres a command talks to. */
export interface Database {
  connectionString: string;
  /** True when it is the embedded Postgres: a private dev database, migrated automatically. */
  embedded: boolean;
  /**
   * A connection that bypasses a transaction-mode pooler (PGWAKE_LISTEN_URL): for LISTEN and for
   * migrations. Unset: `connectionString` is direct.
   */
  directConnectionString?: string;
}

/**
 * DATABASE_URL when set; otherwise the embedded Postgres in the data directory (started now and
 * stopped by the lifecycle, or reused when another pgwake process already runs it).
 */
export async function openDatabase(
  config: Pick<Config, "databaseUrl" | "dataDir" | "embeddedPort" | "embeddedHome"> &
    Partial<Pick<Config, "listenUrl">>,
  logger: Logger,
  lifecycle: Lifecycle,
): Promise<Database> {
  if (config.databaseUrl) {
    logger.debug({ database: redactUrl(config.databaseUrl) }, "using DATABASE_URL");
    return {
      connectionString: config.databaseUrl,
      embedded: false,
      ...(config.listenUrl ? { directConnectionString: config.listenUrl } : {}),
    };
  }
  const server = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    port: config.embeddedPort,
    rootHome: config.embeddedHome,
    logger,
  });
  if (server.owned) lifecycle.onCleanup("embedded Postgres", () => server.stop());
  return { connectionString: server.connectionString, embedded: true };
}
