import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ApiDeps } from "../api/context.ts";
import { ApiError } from "../api/errors.ts";
import { mountRoute } from "../api/route.ts";
import type { ApiEnv } from "../api/types.ts";
import { UiAssets } from "./assets.ts";
import { uiRouteDefinitions } from "./definitions.ts";
import { PAGE_CSP, type PageName, renderPage } from "./pages.ts";
import { queueMinutes } from "./sql/minutes.ts";
import { liveWorkers } from "./sql/workers.ts";

const PAGE_HEADERS = {
  "Content-Security-Policy": PAGE_CSP,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-cache",
};

/**
 * The web dashboard at `/ui`: its pages and files (public: they hold no data, like `/docs`), and
 * the two reads it draws with that the API did not have, `GET /workers` and
 * `GET /stats/minutes` (behind the key like every read of data).
 */
export function uiRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const routes = uiRouteDefinitions();
  const assets = new UiAssets();
  if (!assets.available) {
    deps.logger.warn("the dashboard's files are missing from this install: /ui cannot work");
  }
  const open = { access: "public" } as const;
  const data = { access: "key", database: true } as const;

  const page =
    (name: PageName, params: { id?: string; name?: string } = {}) =>
    (c: Context) =>
      c.html(renderPage(name, params), 200, PAGE_HEADERS);

  mountRoute(app, deps, routes.overview, (c) => page("overview")(c), open);
  mountRoute(app, deps, routes.jobs, (c) => page("jobs")(c), open);
  mountRoute(app, deps, routes.job, (c) => page("job", { id: c.req.param("id") })(c), open);
  mountRoute(app, deps, routes.queue, (c) => page("queue", { name: c.req.param("name") })(c), open);
  mountRoute(app, deps, routes.schedules, (c) => page("schedules")(c), open);

  mountRoute(
    app,
    deps,
    routes.asset,
    async (c, { params }) => {
      const asset = assets.get(params.file);
      if (!asset) throw new ApiError(404, "NOT_FOUND", "no such file");
      const { type, body } = await asset;
      return c.body(body, 200, {
        "Content-Type": type,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
      });
    },
    open,
  );

  mountRoute(
    app,
    deps,
    routes.listWorkers,
    async () => {
      const workers = await liveWorkers(deps.pgwake.pool, deps.sql);
      return {
        status: 200,
        body: {
          workers: workers.map((w) => ({
            ...w,
            startedAt: w.startedAt.toISOString(),
            lastSeenAt: w.lastSeenAt.toISOString(),
            leaseExpiresAt: w.leaseExpiresAt.toISOString(),
          })),
        },
      };
    },
    data,
  );

  mountRoute(
    app,
    deps,
    routes.queueMinutes,
    async (_c, { query }) => {
      const read = await queueMinutes(deps.pgwake.pool, deps.sql, query.minutes ?? 60, query.queue);
      return {
        status: 200,
        body: {
          now: read.now.toISOString(),
          from: read.from.toISOString(),
          minutes: read.minutes.map((m) => ({ ...m, minute: m.minute.toISOString() })),
        },
      };
    },
    data,
  );

  return app;
}
