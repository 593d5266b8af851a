import { OpenAPIHono } from "@hono/zod-openapi";
import { methodNotAllowed } from "hono/method-not-allowed";
import type { Registry } from "prom-client";
import type { Pgwake } from "../client.ts";
import { type Logger, silentLogger } from "../logger.ts";
import { scheduleRoutes } from "../schedules/routes.ts";
import { SETTING_DEFAULTS } from "../settings.ts";
import { uiRoutes } from "../ui/routes.ts";
import { type AccessSettings, type ApiDeps, schemaSqlOf } from "./context.ts";
import { apiDocument, registerSecurity } from "./document.ts";
import { ApiError, errorHandler, renderError } from "./errors.ts";
import { apiExamples, exampleTask } from "./examples.ts";
import { ApiMetrics } from "./metrics.ts";
import { AccessControl } from "./middleware/auth.ts";
import { httpLog } from "./middleware/httpLog.ts";
import { requestId } from "./middleware/requestId.ts";
import { SchemaReadiness } from "./readiness.ts";
import { bulkRoutes } from "./routes/bulk.ts";
import { docsRoutes } from "./routes/docs.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { queueRoutes } from "./routes/queues.ts";
import { systemRoutes } from "./routes/system.ts";
import type { ApiEnv } from "./types.ts";

/** How the HTTP API behaves. */
export interface ApiOptions {
  pgwake: Pgwake;
  logger?: Logger;
  /** Accepted bearer keys (several, for rotation). None: the API is open, and logs so. */
  apiKeys?: string[];
  /** `/metrics` without a key (default true). */
  metricsPublic?: boolean;
  /**
   * `/openapi.json` without a key (default false). The `/docs` page itself is always served: it
   * holds nothing about this server, and asks for a key when the document needs one.
   */
  docsPublic?: boolean;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimitBytes?: number;
  /** Most jobs in one `POST /jobs/batch` (default 1000). */
  batchLimit?: number;
  /**
   * Accept task names this process does not know (default: true when it knows none). The
   * library's own `unknownTasks` setting applies too: the API cannot accept a name it refuses.
   */
  acceptUnknownTasks?: boolean;
  /**
   * Other metrics of this process that `/metrics` shows too (e.g. a worker's
   * `worker.metrics.registry` when the API and a worker share a process). No metric name may
   * appear twice.
   */
  extraMetrics?: readonly Registry[];
  /**
   * Serve the web dashboard at `/ui` (and the reads it draws with, `GET /workers` and
   * `GET /stats/minutes`). Default false: an application mounting the API keeps its routes to
   * itself; `pgwake start` and `pgwake api` turn it on unless PGWAKE_UI is off.
   */
  ui?: boolean;
}

/** From the one table of settings (src/settings.ts): the API and the CLI cannot disagree. */
export const DEFAULT_BODY_LIMIT_BYTES = SETTING_DEFAULTS.bodyLimitBytes;
export const DEFAULT_BATCH_LIMIT = SETTING_DEFAULTS.batchLimit;

/**
 * Builds the pgwake HTTP API on Hono: job submission and control, queue stats, health,
 * readiness, Prometheus metrics, an OpenAPI 3.1 document generated from the routes, and offline
 * Swagger UI docs. Every failure is rendered by one handler as
 * `{ "error": { code, message, details? } }`. Serve it with `serveApi`, or mount it in another
 * Hono app.
 */
export function createApp(options: ApiOptions): OpenAPIHono<ApiEnv> {
  const logger = options.logger ?? silentLogger;
  const pgwake = options.pgwake;
  const apiKeys = (options.apiKeys ?? []).filter((key) => key.length > 0);
  const access: AccessSettings = {
    authRequired: apiKeys.length > 0,
    metricsPublic: options.metricsPublic ?? true,
    docsPublic: options.docsPublic ?? false,
  };
  if (!access.authRequired) {
    logger.warn("no API keys configured: the HTTP API is open to anyone who can reach it");
  }
  const task = exampleTask(pgwake);
  const deps: ApiDeps = {
    pgwake,
    sql: schemaSqlOf(pgwake),
    logger,
    metrics: new ApiMetrics(pgwake, logger, options.extraMetrics),
    readiness: new SchemaReadiness(() => pgwake.schemaState()),
    access,
    accessControl: new AccessControl(access, apiKeys),
    bodyLimitBytes: options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    batchLimit: options.batchLimit ?? DEFAULT_BATCH_LIMIT,
    acceptUnknownTasks: options.acceptUnknownTasks ?? pgwake.knownTaskNames().length === 0,
    exampleTask: task,
    examples: apiExamples(task, pgwake.tasks),
  };

  const app = new OpenAPIHono<ApiEnv>();
  let document: Record<string, unknown> | undefined;
  const openapi = () => {
    document ??= apiDocument(app, deps);
    return document;
  };

  app.onError(errorHandler(logger));
  app.notFound((c) =>
    renderError(
      c,
      new ApiError(404, "NOT_FOUND", `no route ${c.req.method} ${c.req.path.slice(0, 200)}`),
    ),
  );
  app.use(requestId());
  app.use(httpLog({ logger, metrics: deps.metrics }));
  app.use(
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, methods) =>
        renderError(
          c,
          new ApiError(
            405,
            "METHOD_NOT_ALLOWED",
            `${c.req.method} is not allowed here; use ${methods.join(", ")}`,
            { headers: { Allow: methods.join(", ") }, details: { allow: methods } },
          ),
        ),
    }),
  );
  app.use(deps.accessControl.middleware());
  registerSecurity(app, access);
  app.route("/", bulkRoutes(deps)); // before the job routes: /jobs/bulk/retry is not /jobs/{id}/retry
  app.route("/", jobRoutes(deps));
  app.route("/", queueRoutes(deps));
  app.route("/", scheduleRoutes(deps));
  app.route("/", systemRoutes(deps, openapi));
  app.route("/", docsRoutes(deps));
  if (options.ui) app.route("/", uiRoutes(deps));
  return app;
}
