import type { Registry } from "prom-client";
import { createApp } from "../../api/app.ts";
import { serveApi } from "../../api/server.ts";
import type { Pgwake } from "../../client.ts";
import type { Config } from "../../config.ts";
import type { Logger } from "../../logger.ts";
import { CommandError } from "../errors.ts";
import type { Lifecycle } from "../lifecycle.ts";

/** Serves the HTTP API; the lifecycle closes it first on stop. */
export async function startApi(
  pgwake: Pgwake,
  config: Config,
  logger: Logger,
  lifecycle: Lifecycle,
  extraMetrics: readonly Registry[] = [],
): Promise<{ url: string; port: number }> {
  const app = createApp({
    pgwake,
    extraMetrics,
    logger,
    apiKeys: config.apiKeys,
    metricsPublic: config.metricsPublic,
    docsPublic: config.docsPublic,
    // The library refuses (or warns about) names it does not define; the API follows it.
    acceptUnknownTasks: config.unknownTasks === "warn",
    bodyLimitBytes: config.bodyLimitBytes,
    batchLimit: config.batchLimit,
    ui: config.ui,
  });
  let server: Awaited<ReturnType<typeof serveApi>>;
  try {
    server = await serveApi(app, { port: config.port, host: config.host });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const hint =
      code === "EADDRINUSE"
        ? `port ${config.port} is already in use: set PORT (or --port) to a free port`
        : code === "EACCES"
          ? `not allowed to listen on port ${config.port}: use a port above 1023`
          : `cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`;
    throw new CommandError(hint, { cause: error });
  }
  lifecycle.onCleanup("HTTP server", () =>
    // Open requests get the grace period; a client that never finishes does not hold us.
    Promise.race([server.close(), delay(config.shutdownGraceMs)]),
  );
  return { url: server.url, port: server.port };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** A newcomer's next step, printed when the API is up. */
export function curlHint(url: string): string {
  const local = url.replace("://0.0.0.0:", "://localhost:").replace("://[::]:", "://localhost:");
  return `curl -X POST ${local}/jobs -H 'content-type: application/json' -d '{"task":"demo.echo","payload":{"hello":"world"}}'`;
}
