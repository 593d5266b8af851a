import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "../errors.ts";
import type { ApiEnv } from "../types.ts";

const BEARER = /^Bearer ([\x21-\x7e]{1,4096})$/;

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * Requires `Authorization: Bearer <key>` with one of `keys` on every path not in `publicPaths`.
 * Keys are compared as SHA-256 digests with `timingSafeEqual`, against every configured key, so
 * neither the key's length nor which key matched shows in the timing. Keys are never logged.
 */
export function bearerAuth(options: {
  keys: readonly string[];
  isPublic: (path: string) => boolean;
}): MiddlewareHandler<ApiEnv> {
  const digests = options.keys.map(digest);
  return async function bearerAuthMiddleware(c, next) {
    if (digests.length === 0 || options.isPublic(c.req.path)) return next();
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
    return next();
  };
}
