import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { AccessSettings } from "../context.ts";
import { ApiError } from "../errors.ts";

const BEARER = /^Bearer ([\x21-\x7e]{1,4096})$/;

/**
 * Who may call a route: `key` needs a bearer key whenever keys are configured; `public` never
 * does (health, readiness, the static docs page); `metrics` and `document` follow the
 * `metricsPublic` and `docsPublic` settings. The same value decides the route's `security` in the
 * OpenAPI document, so what is documented is what is enforced.
 */
export type Access = "key" | "public" | "metrics" | "document";

/** True when a route of this access answers without a key under these settings. */
export function isOpen(access: Access, settings: AccessSettings): boolean {
  if (!settings.authRequired) return true;
  switch (access) {
    case "public":
      return true;
    case "metrics":
      return settings.metricsPublic;
    case "document":
      return settings.docsPublic;
    case "key":
      return false;
  }
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * A check of `Authorization: Bearer <key>` against `keys`: throws 401 when it is missing or
 * malformed, 403 when the key is not one of them. Keys are compared as SHA-256 digests with
 * `timingSafeEqual`, against every configured key, so neither the key's length nor which key
 * matched shows in the timing. Keys are never logged.
 */
export function bearerCheck(keys: readonly string[]): (c: Context) => void {
  const digests = keys.map(digest);
  return function checkBearer(c) {
    const header = c.req.header("authorization");
    const challenge = { "WWW-Authenticate": 'Bearer realm="pgwake"' };
    if (header === undefined) {
      throw new ApiError(401, "UNAUTHORIZED", "missing Authorization: Bearer <key>", {
        headers: challenge,
      });
    }
    const match = BEARER.exec(header);
    if (!match) {
      throw new ApiError(401, "UNAUTHORIZED", "Authorization must be: Bearer <key>", {
        headers: challenge,
      });
    }
    const given = digest(match[1]!);
    let ok = false;
    for (const known of digests) ok = timingSafeEqual(given, known) || ok;
    if (!ok) throw new ApiError(403, "FORBIDDEN", "the API key is not valid");
  };
}

/**
 * Keys on every route, except the handlers marked open: secure by default, so a route mounted
 * some other way (not through `mountRoute`) needs a key too. A request no route answers (404, or
 * 405 for a method its path does not take) needs none: it reaches no data, and its answer is the
 * same for everyone.
 */
export class AccessControl {
  private readonly open = new WeakSet<object>();
  private readonly settings: AccessSettings;
  private readonly check: (c: Context) => void;

  constructor(settings: AccessSettings, keys: readonly string[]) {
    this.settings = settings;
    this.check = bearerCheck(keys);
  }

  /** Records who may call `handler`; true when it answers without a key. */
  allow(access: Access, handler: object): boolean {
    const open = isOpen(access, this.settings);
    if (open) this.open.add(handler);
    return open;
  }

  /** The middleware: checks the key unless the route that will answer is open. */
  middleware(): MiddlewareHandler {
    return async (c, next) => {
      if (this.settings.authRequired && !this.answersWithoutKey(c)) this.check(c);
      await next();
    };
  }

  private answersWithoutKey(c: Context): boolean {
    const route = matchedRoutes(c).findLast((r) => r.method !== "ALL");
    if (!route) return true;
    // Mounted in another Hono app, our handlers are wrapped with our error handler; Hono keeps
    // the original under this key.
    let handler: unknown = route.handler;
    while (handler && !this.open.has(handler as object)) {
      handler = (handler as { __COMPOSED_HANDLER?: unknown }).__COMPOSED_HANDLER;
    }
    return handler !== undefined;
  }
}
