import type { Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { serve } from "@hono/node-server";
import type { Hono } from "hono";
import type { ApiErrorCode } from "./errors.ts";
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
    answerClientErrorsInOrder(server as unknown as Server);
  });
}

/**
 * Bytes that are not HTTP on a connection are answered with 400 (431 for headers too large) and
 * the connection closed — but only after the response already owed on that connection is
 * written. Node's default handler writes its 400 and closes at once: a job created by a valid
 * request just before the bad bytes then existed without its 201 ever being sent, and a client
 * that retried made a duplicate.
 */
function answerClientErrorsInOrder(server: Server): void {
  server.removeAllListeners("clientError");
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const answer = () => {
      if (!socket.writable) return void socket.destroy();
      const tooLarge = error.code === "HPE_HEADER_OVERFLOW";
      const body = JSON.stringify({
        error: {
          code: "MALFORMED_REQUEST" satisfies ApiErrorCode,
          message: tooLarge ? "request headers too large" : "the request is not valid HTTP/1.1",
        },
      });
      socket.end(
        `HTTP/1.1 ${tooLarge ? "431 Request Header Fields Too Large" : "400 Bad Request"}\r\n` +
          "Content-Type: application/json\r\n" +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    };
    // The response in progress on this connection, if any (Node keeps it on the socket).
    const owed = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (owed && !owed.writableFinished) {
      owed.once("finish", () => {
        // A response that said `Connection: close` ends the exchange: bytes after it would be
        // read by the client as a broken response ("Data after Connection: close").
        if (!(owed as ServerResponse & { shouldKeepAlive?: boolean }).shouldKeepAlive) {
          socket.end();
          return;
        }
        answer();
      });
      owed.once("close", () => {
        if (!owed.writableFinished) socket.destroy();
      });
    } else {
      answer();
    }
  });
}
