import type { MiddlewareHandler } from "hono";
import type { Logger } from "../../logger.ts";
import type { ApiMetrics } from "../metrics.ts";
import type { ApiEnv } from "../types.ts";

/**
 * Times every request into the HTTP duration histogram (labelled by route pattern, not path, so
 * ids do not explode the label set) and writes one log line with the request id. Headers are
 * not logged: they may hold an API key.
 */
export function httpLog(options: {
  logger: Logger;
  metrics: ApiMetrics;
}): MiddlewareHandler<ApiEnv> {
  const { logger, metrics } = options;
  return async function httpLogMiddleware(c, next) {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const status = c.res.status;
    const route = c.req.routePath && c.req.routePath !== "/*" ? c.req.routePath : "unmatched";
    metrics.httpDuration.observe({ method: c.req.method, route, status: String(status) }, seconds);
    const line = {
      requestId: c.get("requestId"),
      method: c.req.method,
      path: c.req.path.slice(0, 256),
      status,
      ms: Math.round(seconds * 10_000) / 10,
    };
    if (status >= 500) logger.error(line, "request failed");
    else if (status >= 400) logger.info(line, "request refused");
    else logger.info(line, "request");
  };
}
