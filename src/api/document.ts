import type { OpenAPIHono } from "@hono/zod-openapi";
import { SCHEDULES_TAG } from "../schedules/routes.ts";
import { DASHBOARD_TAG } from "../ui/definitions.ts";
import type { AccessSettings } from "./context.ts";
import { BULK_TAG } from "./definitions/bulk.ts";
import type { ApiEnv } from "./types.ts";

/** The API's version in its document. */
export const API_VERSION = "0.1.0";

const TAGS = [
  { name: "jobs", description: "Submit, follow, cancel and retry jobs" },
  BULK_TAG,
  { name: "queues", description: "Queue statistics, pause and resume" },
  {
    name: "flow control",
    description: "Limits of a queue across every worker: concurrency, per key, rates, fairness",
  },
  SCHEDULES_TAG,
  { name: "system", description: "Health, readiness and metrics" },
  { name: "docs", description: "This documentation" },
  DASHBOARD_TAG,
];

/** Components the routes refer to by name rather than by zod schema. */
export function registerSecurity(app: OpenAPIHono<ApiEnv>, access: AccessSettings): void {
  if (!access.authRequired) return;
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description:
      "One of the server's API keys (PGWAKE_API_KEYS), as `Authorization: Bearer <key>`.",
  });
}

/**
 * The OpenAPI 3.1 document of an app, generated from the routes it registered (each a
 * `createRoute` definition with the zod schemas it validates with) by @hono/zod-openapi.
 */
export function apiDocument(
  app: OpenAPIHono<ApiEnv>,
  options: { bodyLimitBytes: number; access: AccessSettings },
): Record<string, unknown> {
  const auth = options.access.authRequired
    ? "Every operation whose `security` names `bearer` needs `Authorization: Bearer <key>` (401 without one, 403 with a wrong one)."
    : "This server has no API keys: every operation is open.";
  const document = app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "pgwake",
      version: API_VERSION,
      description: [
        'Every failure answers `{ "error": { "code", "message", "details"? } }`; `code` is stable, for programs.',
        `Request bodies are JSON (\`Content-Type: application/json\`), at most ${options.bodyLimitBytes} bytes.`,
        "Every response carries `x-request-id` (yours when you send a plain one, else a new UUID); jobs keep the id of the request that created them.",
        "A path that does not exist answers 404 NOT_FOUND; a path that exists with another method answers 405 with `Allow`.",
        auth,
      ].join("\n\n"),
      license: { name: "MIT", url: "https://opensource.org/license/mit" },
    },
    servers: [{ url: "/", description: "The server that serves this document" }],
    tags: TAGS,
  }) as unknown as Record<string, unknown>;
  // Sections the generator always writes, empty here: left out so the document says only what is.
  const { webhooks: _webhooks, ...rest } = document;
  const components = rest.components as Record<string, Record<string, unknown>>;
  for (const [name, section] of Object.entries(components)) {
    if (Object.keys(section).length === 0) delete components[name];
  }
  return rest;
}
