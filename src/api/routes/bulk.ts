import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { BULK_STATUSES, type BulkAction, type BulkFilter, bulkJobs } from "../../jobs/bulk.ts";
import type { JobStatus } from "../../jobs/types.ts";
import type { ApiDeps } from "../context.ts";
import { bulkRouteDefinitions } from "../definitions/bulk.ts";
import { mountRoute } from "../route.ts";
import type { ApiEnv } from "../types.ts";

/** What every bulk body carries (each action's schema adds or drops a field). */
interface BulkBody {
  queue?: string;
  task?: string;
  status?: readonly string[];
  createdAfter?: string;
  createdBefore?: string;
  finishedBefore?: string;
  dryRun?: boolean;
}

/** The default statuses of an action when the body names none (delete must name them). */
const DEFAULT_STATUSES: Record<BulkAction, readonly JobStatus[]> = {
  retry: ["failed"],
  cancel: BULK_STATUSES.cancel,
  delete: BULK_STATUSES.delete,
};

function filterOf(action: BulkAction, body: BulkBody): BulkFilter {
  const date = (value: string | undefined) => (value === undefined ? undefined : new Date(value));
  return {
    statuses: (body.status as JobStatus[] | undefined) ?? DEFAULT_STATUSES[action],
    ...(body.queue !== undefined ? { queue: body.queue } : {}),
    ...(body.task !== undefined ? { task: body.task } : {}),
    ...(body.createdAfter !== undefined ? { createdAfter: date(body.createdAfter)! } : {}),
    ...(body.createdBefore !== undefined ? { createdBefore: date(body.createdBefore)! } : {}),
    ...(body.finishedBefore !== undefined ? { finishedBefore: date(body.finishedBefore)! } : {}),
  };
}

/**
 * Bulk routes: retry, cancel or delete every job matching a filter. Mount them before the job
 * routes: `/jobs/bulk/retry` would otherwise be taken by `/jobs/{id}/retry` with the id "bulk".
 */
export function bulkRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const routes = bulkRouteDefinitions(deps);
  const options = { access: "key", database: true, bodyName: "bulk request" } as const;

  const run = async (c: Context<ApiEnv>, action: BulkAction, body: BulkBody) => {
    const dryRun = body.dryRun ?? false;
    // Batches stop when the client goes away; what was done stays done.
    const result = await bulkJobs(deps.pgwake.pool, deps.sql, action, filterOf(action, body), {
      dryRun,
      signal: c.req.raw.signal,
    });
    deps.logger.info(
      { requestId: c.get("requestId"), action, dryRun, ...result },
      `bulk ${action}${dryRun ? " (dry run)" : ""}: ${result.affected} jobs`,
    );
    return { status: 200 as const, body: { action, dryRun, ...result } };
  };

  mountRoute(app, deps, routes.bulkRetry, (c, { body }) => run(c, "retry", body), options);
  mountRoute(app, deps, routes.bulkCancel, (c, { body }) => run(c, "cancel", body), options);
  mountRoute(app, deps, routes.bulkDelete, (c, { body }) => run(c, "delete", body), options);
  return app;
}
