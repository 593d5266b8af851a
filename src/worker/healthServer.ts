import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import client from "prom-client";
import type { Worker } from "./worker.ts";

/** A worker's health server. */
export interface WorkerHealthServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * Serves a worker's `/health` (the process answers), `/ready` (it can take and run jobs now:
 * 503 with the reason otherwise, e.g. fenced after losing its database, or its listener down)
 * and `/metrics` (the worker's counters and the process's, Prometheus text). No key is needed:
 * nothing here is secret, and orchestrators probe without one. Bind it where only they reach.
 */
export function serveWorkerHealth(
  worker: Worker,
  options: { port: number; host?: string },
): Promise<WorkerHealthServer> {
  const processMetrics = new client.Registry();
  client.collectDefaultMetrics({ register: processMetrics });
  const app = new Hono();
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", (c) => {
    const health = worker.health();
    return c.json(
      { status: health.ready ? "ready" : "not ready", ...health },
      health.ready ? 200 : 503,
    );
  });
  app.get("/metrics", async (c) => {
    const merged = client.Registry.merge([processMetrics, worker.metrics.registry]);
    return c.body(await merged.metrics(), 200, { "Content-Type": merged.contentType });
  });
  app.notFound((c) =>
    c.json(
      { error: { code: "NOT_FOUND", message: `no route ${c.req.method} ${c.req.path}` } },
      404,
    ),
  );
  const host = options.host ?? "0.0.0.0";
  return new Promise((resolve, reject) => {
    const server = serve(
      { fetch: app.fetch, port: options.port, hostname: host },
      (info: AddressInfo) => {
        resolve({
          port: info.port,
          url: `http://${info.family === "IPv6" ? `[${info.address}]` : info.address}:${info.port}`,
          close: () =>
            new Promise<void>((done) => {
              server.close(() => done());
              (server as { closeAllConnections?: () => void }).closeAllConnections?.();
            }),
        });
      },
    );
    server.once("error", reject);
  });
}
