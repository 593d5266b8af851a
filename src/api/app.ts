import { Hono } from "hono";
import { methodNotAllowed } from "hono/method-not-allowed";
import type { Pgwake } from "../client.ts";
import { type Logger, silentLogger } from "../logger.ts";
import { type ApiDeps, schemaSqlOf } from "./context.ts";
import { ApiError, errorHandler, renderError } from "./errors.ts";
import { ApiMetrics } from "./metrics.ts";
import { bearerAuth } from "./middleware/auth.ts";
import { httpLog } from "./middleware/httpLog.ts";
import { requestId } from "./middleware/requestId.ts";
import { buildOpenApi } from "./openapi.ts";
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
  /** `/metrics` without auth (default true). */
  metricsPublic?: boolean;
  /** `/docs`, its assets and `/openapi.json` without auth (default false), for browsers. */
  docsPublic?: boolean;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimitBytes?: number;
  /** Most jobs in one `POST /jobs/batch` (default 1000). */
  batchLimit?: number;
  /** Accept tasks this process does not know (default: true when `pgwake.tasks` is empty). */
  acceptUnknownTasks?: boolean;
}

export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;
export const DEFAULT_BATCH_LIMIT = 1000;
const VERSION = "0.1.0";

/**
 * Builds the pgwake HTTP API on Hono: job submission and control, queue stats, health,
 * readiness, Prometheus metrics, an OpenAPI 3.1 document and offline Swagger UI docs.
 * Every failure is rendered by one handler as `{ "error": { code, message, details? } }`.
 * Serve it with `serveApi`, or mount it in another Hono app.
 */
export function createApp(options: ApiOptions): Hono<ApiEnv> {
  const logger = options.logger ?? silentLogger;
  const pgwake = options.pgwake;
  const apiKeys = (options.apiKeys ?? []).filter((key) => key.length > 0);
  const metricsPublic = options.metricsPublic ?? true;
  const docsPublic = options.docsPublic ?? false;
  const bodyLimitBytes = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const batchLimit = options.batchLimit ?? DEFAULT_BATCH_LIMIT;
  if (apiKeys.length === 0) {
    logger.warn("no API keys configured: the HTTP API is open to anyone who can reach it");
  }
  const metrics = new ApiMetrics(pgwake, logger);
  const deps: ApiDeps = {
    pgwake,
    sql: schemaSqlOf(pgwake),
    logger,
    metrics,
    bodyLimitBytes,
    batchLimit,
    acceptUnknownTasks: options.acceptUnknownTasks ?? pgwake.tasks.size === 0,
  };

  let document: Record<string, unknown> | undefined;
  const openapi = () => {
    document ??= buildOpenApi({
      metricsPublic,
      batchLimit,
      bodyLimitBytes,
      tasks: pgwake.tasks,
      authRequired: apiKeys.length > 0,
      version: VERSION,
    });
    return document;
  };

  const isPublic = (path: string): boolean =>
    path === "/health" ||
    (metricsPublic && path === "/metrics") ||
    (docsPublic && (path === "/docs" || path.startsWith("/docs/") || path === "/openapi.json"));

  const app = new Hono<ApiEnv>();
  app.onError(errorHandler(logger));
  app.notFound((c) =>
    renderError(
      c,
      new ApiError(404, "NOT_FOUND", `no route ${c.req.method} ${c.req.path.slice(0, 200)}`),
    ),
  );
  app.use(requestId());
  app.use(httpLog({ logger, metrics }));
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
            {
              headers: { Allow: methods.join(", ") },
              details: { allow: methods },
            },
          ),
        ),
    }),
  );
  app.use(bearerAuth({ keys: apiKeys, isPublic }));
  app.route("/", systemRoutes(deps, openapi));
  app.route("/", jobRoutes(deps));
  app.route("/", queueRoutes(deps));
  app.route("/", docsRoutes());
  return app;
}
