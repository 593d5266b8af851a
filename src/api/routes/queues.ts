import { OpenAPIHono } from "@hono/zod-openapi";
import { DEFAULT_QUEUE } from "../../jobs/enqueue.ts";
import type { QueueFlow } from "../../jobs/flowControl.ts";
import { queueStats } from "../../jobs/queueStats.ts";
import type { ApiDeps } from "../context.ts";
import { queueRouteDefinitions } from "../definitions/queues.ts";
import { ApiError } from "../errors.ts";
import { mountRoute } from "../route.ts";
import { queueJson, queueLimitsJson, queueSettingsJson } from "../serialize.ts";
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

  mountRoute(
    app,
    deps,
    routes.getQueueLimits,
    async (_c, { params }) => {
      const [flow] = await deps.pgwake.queueLimits(params.name);
      if (!flow) {
        await requireKnown(params.name);
        return { status: 200, body: queueLimitsJson(noLimits(params.name)) };
      }
      return { status: 200, body: queueLimitsJson(flow) };
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.setQueueLimits,
    async (_c, { params, query, body }) => {
      if (query.create !== "true") await requireKnown(params.name);
      const flow = await deps.pgwake.setQueueLimits(params.name, body);
      return { status: 200, body: queueLimitsJson(flow) };
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.deleteQueueLimits,
    async (_c, { params }) => {
      await requireKnown(params.name);
      const flow = await deps.pgwake.clearQueueLimits(params.name);
      return { status: 200, body: queueLimitsJson(flow) };
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.listQueueKeys,
    async (_c, { params, query }) => {
      await requireKnown(params.name);
      const keys = await deps.pgwake.queueKeys(params.name, { limit: query.limit ?? 100 });
      return { status: 200, body: { keys } };
    },
    options,
  );

  return app;
}

/** The limits of a queue that has no row of settings: none. */
function noLimits(name: string): QueueFlow {
  return {
    name,
    paused: false,
    limited: false,
    source: null,
    concurrency: null,
    keyConcurrency: null,
    rateLimit: null,
    ratePeriodMs: 1_000,
    rateBurst: null,
    keyRateLimit: null,
    keyRatePeriodMs: 1_000,
    keyRateBurst: null,
    fair: false,
    running: 0,
    tokens: null,
    throttled: 0,
    updatedAt: new Date(),
  };
}
