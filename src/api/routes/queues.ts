import { OpenAPIHono } from "@hono/zod-openapi";
import { DEFAULT_QUEUE } from "../../jobs/enqueue.ts";
import { queueStats } from "../../jobs/queueStats.ts";
import type { ApiDeps } from "../context.ts";
import { queueRouteDefinitions } from "../definitions/queues.ts";
import { ApiError } from "../errors.ts";
import { mountRoute } from "../route.ts";
import { queueJson, queueSettingsJson } from "../serialize.ts";
import type { ApiEnv } from "../types.ts";

/** Queue routes: stats of every queue, pause and resume. */
export function queueRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const routes = queueRouteDefinitions(deps);
  const options = { access: "key", database: true } as const;

  /**
   * Pausing or resuming a name nobody knows is refused: a misspelt name would otherwise leave
   * a settings row that shows as a queue in `/queues` and the metrics for ever. Known: a queue
   * `/queues` lists (jobs, a worker, a setting), the default queue, or a known task's queue.
   */
  async function requireKnown(name: string): Promise<void> {
    if (name === DEFAULT_QUEUE) return;
    for (const task of deps.pgwake.tasks) if (task.queue === name) return;
    const queues = await queueStats(deps.pgwake.pool, deps.sql);
    if (queues.some((queue) => queue.name === name)) return;
    throw new ApiError(
      404,
      "QUEUE_NOT_FOUND",
      `no queue "${name}" is known; to pause it before its first job, add ?create=true`,
      { details: { knownQueues: queues.map((queue) => queue.name).slice(0, 100) } },
    );
  }

  mountRoute(
    app,
    deps,
    routes.listQueues,
    async () => {
      const queues = await queueStats(deps.pgwake.pool, deps.sql);
      return { status: 200, body: { queues: queues.map(queueJson) } };
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.pauseQueue,
    async (_c, { params, query }) => {
      if (query.create !== "true") await requireKnown(params.name);
      const settings = await deps.pgwake.pauseQueue(params.name);
      return { status: 200, body: queueSettingsJson(settings) };
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.resumeQueue,
    async (_c, { params }) => {
      await requireKnown(params.name);
      const settings = await deps.pgwake.resumeQueue(params.name);
      return { status: 200, body: queueSettingsJson(settings) };
    },
    options,
  );

  return app;
}
