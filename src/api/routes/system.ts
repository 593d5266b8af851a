import { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps } from "../context.ts";
import { systemRouteDefinitions } from "../definitions/system.ts";
import { notReady } from "../errors.ts";
import { mountRoute } from "../route.ts";
import type { ApiEnv } from "../types.ts";

/** Health, readiness, metrics and the OpenAPI document. */
export function systemRoutes(
  deps: ApiDeps,
  openapi: () => Record<string, unknown>,
): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const routes = systemRouteDefinitions();

  mountRoute(app, deps, routes.health, () => ({ status: 200, body: { status: "ok" as const } }), {
    access: "public",
  });

  mountRoute(
    app,
    deps,
    routes.ready,
    async () => {
      const state = await deps.readiness.state();
      if (state.current !== state.latest) throw notReady(state);
      return { status: 200, body: { status: "ready" as const, schema: state } };
    },
    { access: "public" },
  );

  mountRoute(
    app,
    deps,
    routes.metrics,
    async (c) => {
      const text = await deps.metrics.render();
      return c.body(text, 200, { "Content-Type": deps.metrics.contentType });
    },
    { access: "metrics" },
  );

  mountRoute(app, deps, routes.openapi, (c) => c.json(openapi()), { access: "document" });
  return app;
}
