import type { Pgwake } from "../client.ts";
import { SchemaSql } from "../db/sql.ts";
import type { Logger } from "../logger.ts";
import type { ApiExamples, ExampleTask } from "./examples.ts";
import type { ApiMetrics } from "./metrics.ts";
import type { AccessControl } from "./middleware/auth.ts";
import type { SchemaReadiness } from "./readiness.ts";

/** Who may call what: the settings the auth middleware enforces and the document declares. */
export interface AccessSettings {
  /** API keys are configured: every route that is not public needs a bearer key. */
  authRequired: boolean;
  /** `/metrics` without a key. */
  metricsPublic: boolean;
  /** `/openapi.json` without a key. */
  docsPublic: boolean;
}

/** What the routes share: the engine, settings already defaulted, metrics, examples. */
export interface ApiDeps {
  pgwake: Pgwake;
  sql: SchemaSql;
  logger: Logger;
  metrics: ApiMetrics;
  readiness: SchemaReadiness;
  access: AccessSettings;
  /** Which routes answer without a key. */
  accessControl: AccessControl;
  bodyLimitBytes: number;
  batchLimit: number;
  acceptUnknownTasks: boolean;
  /** The task the document's examples submit, and the examples made with it. */
  exampleTask: ExampleTask;
  examples: ApiExamples;
}

export function schemaSqlOf(pgwake: Pgwake): SchemaSql {
  return new SchemaSql(pgwake.schema);
}
