import { Hono } from "hono";
import type { ApiDeps } from "../context.ts";
import { ApiError } from "../errors.ts";
import type { ApiEnv } from "../types.ts";

/** Health, readiness, metrics and the OpenAPI document. */
export function systemRoutes(deps: ApiDeps, openapi: () => Record<string, unknown>): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.get("/health", (c) => c.json({ status: "ok" }));

  app.get("/ready", async (c) => {
    const state = await deps.pgwake.schemaState();
    if (state.current !== state.latest) {
      throw new ApiError(
        503,
        "NOT_READY",
        "the database schema is not at the version this code expects: run migrations",
        {
          details: state,
          headers: { "Retry-After": "5" },
        },
      );
    }
    return c.json({ status: "ready", schema: state });
  });

  app.get("/metrics", async (c) => {
    const text = await deps.metrics.render();
    return c.body(text, 200, { "Content-Type": deps.metrics.contentType });
  });

  app.get("/openapi.json", (c) => c.json(openapi()));
  return app;
}
