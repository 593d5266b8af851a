import { randomUUID } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import type { ApiEnv } from "../types.ts";

// A caller's id is kept only when it is short and plain, so it is safe in logs and headers.
const ACCEPTED = /^[A-Za-z0-9._:-]{1,128}$/;

/** Takes `x-request-id` from the request (or makes one), exposes it and echoes it back. */
export function requestId(options: { header?: string } = {}): MiddlewareHandler<ApiEnv> {
  const header = options.header ?? "x-request-id";
  return async function requestIdMiddleware(c, next) {
    const given = c.req.header(header);
    const id = given && ACCEPTED.test(given) ? given : randomUUID();
    c.set("requestId", id);
    // Set on the context, so every response made from it carries the id, errors included.
    c.header(header, id);
    await next();
  };
}
