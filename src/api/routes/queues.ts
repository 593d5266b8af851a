import { type Context, Hono } from "hono";
import { queueStats } from "../../jobs/queueStats.ts";
import type { ApiDeps } from "../context.ts";
import { ApiError } from "../errors.ts";
import { QUEUE_NAME } from "../schemas.ts";
import type { ApiEnv } from "../types.ts";

/** Queue routes: stats of every queue, pause and resume. */
export function queueRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.get("/queues", async (c) => {
    const queues = await queueStats(deps.pgwake.pool, deps.sql);
    return c.json({ queues });
  });

  const setPaused = (paused: boolean) =>
    async function setQueuePaused(c: Context<ApiEnv>) {
      const name = c.req.param("name") ?? "";
      if (!QUEUE_NAME.test(name)) {
        throw new ApiError(400, "VALIDATION_FAILED", "invalid queue name", {
          details: [
            {
              path: "name",
              message: "a queue name: 1-128 of A-Z a-z 0-9 _ . : -",
              code: "invalid_format",
            },
          ],
        });
      }
      const settings = paused
        ? await deps.pgwake.pauseQueue(name)
        : await deps.pgwake.resumeQueue(name);
      return c.json({
        name: settings.name,
        paused: settings.paused,
        updatedAt: settings.updatedAt.toISOString(),
      });
    };
  app.post("/queues/:name/pause", setPaused(true));
  app.post("/queues/:name/resume", setPaused(false));
  return app;
}
