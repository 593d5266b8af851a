import type { Pgwake } from "../client.ts";
import { SchemaSql } from "../db/sql.ts";
import type { Logger } from "../logger.ts";
import type { ApiMetrics } from "./metrics.ts";

/** What the routes share: the engine, settings already defaulted, metrics. */
export interface ApiDeps {
  pgwake: Pgwake;
  sql: SchemaSql;
  logger: Logger;
  metrics: ApiMetrics;
  bodyLimitBytes: number;
  batchLimit: number;
  acceptUnknownTasks: boolean;
}

export function schemaSqlOf(pgwake: Pgwake): SchemaSql {
  return new SchemaSql(pgwake.schema);
}
