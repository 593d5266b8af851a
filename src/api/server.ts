import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Hono } from "hono";
import type { ApiEnv } from "./types.ts";

/** A running HTTP server. */
export interface ApiServer {
  port: number;
  url: string;
  /** Stops accepting connections and waits for open requests to finish. */
  close(): Promise<void>;
}

/**
 * Serves an app over HTTP with @hono/node-server. Port 0 picks a free port; the answer says
 * which. Resolves once the socket is listening.
 */
export function serveApi(
  app: Pick<Hono<ApiEnv>, "fetch">,
  options: { port: number; host?: string },
): Promise<ApiServer> {
  const host = options.host ?? "127.0.0.1";
  return new Promise((resolve, reject) => {
    const server = serve(
      { fetch: app.fetch, port: options.port, hostname: host },
      (info: AddressInfo) => {
        const shownHost = info.family === "IPv6" ? `[${info.address}]` : info.address;
        resolve({
          port: info.port,
          url: `http://${shownHost}:${info.port}`,
          close: () =>
            new Promise<void>((done, fail) => {
              server.close((error) => (error ? fail(error) : done()));
              // Idle keep-alive sockets would hold close() open until they time out.
              (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
            }),
        });
      },
    );
    server.once("error", reject);
  });
}
