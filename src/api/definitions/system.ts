import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { failure, jsonResponse } from "../responses.ts";
import { HealthSchema, OpenApiDocumentSchema, ReadySchema } from "../schemas.ts";

const METRICS_EXAMPLE = `# HELP pgwake_queue_depth Jobs waiting in the queue (pending + retrying), at scrape time
# TYPE pgwake_queue_depth gauge
pgwake_queue_depth{queue="default"} 12
`;

/** Health, readiness, metrics, the OpenAPI document, and the Swagger UI page. */
export function systemRouteDefinitions() {
  const health = createRoute({
    method: "get",
    path: "/health",
    operationId: "health",
    tags: ["system"],
    summary: "Liveness: the process answers (no database)",
    responses: {
      200: jsonResponse("The process is up", HealthSchema, { status: "ok" }),
    },
  });

  const ready = createRoute({
    method: "get",
    path: "/ready",
    operationId: "ready",
    tags: ["system"],
    summary: "Readiness: the database answers and its schema is current",
    description:
      "For health checks and load balancers: no key needed, and nothing in the answer but schema versions.",
    responses: {
      200: jsonResponse("Ready", ReadySchema, {
        status: "ready",
        schema: { current: 2, latest: 2 },
      }),
      503: failure(
        "The database is unreachable (DATABASE_UNAVAILABLE) or its schema is not current (NOT_READY: run migrations)",
        ["NOT_READY", "DATABASE_UNAVAILABLE"],
        {
          message:
            "the database schema is at version 0, this server needs 2: run `pgwake migrate` (or `pgwake start`, which migrates)",
          details: { current: 0, latest: 2 },
        },
        { "Retry-After": { description: "Seconds to wait.", schema: { type: "integer" } } },
      ),
    },
  });

  const metrics = createRoute({
    method: "get",
    path: "/metrics",
    operationId: "metrics",
    tags: ["system"],
    summary: "Prometheus metrics",
    description:
      "HTTP request durations, jobs submitted through this process, queue gauges read at scrape time, and the standard process_* and nodejs_* metrics.",
    responses: {
      200: {
        description: "Prometheus text format",
        content: { "text/plain": { schema: z.string(), example: METRICS_EXAMPLE } },
      },
    },
  });

  const openapi = createRoute({
    method: "get",
    path: "/openapi.json",
    operationId: "openapi",
    tags: ["docs"],
    summary: "This document (OpenAPI 3.1)",
    responses: {
      200: jsonResponse("The document", OpenApiDocumentSchema, {
        openapi: "3.1.0",
        info: { title: "pgwake", version: "0.1.0" },
        paths: {},
      }),
    },
  });

  const docs = createRoute({
    method: "get",
    path: "/docs",
    operationId: "docs",
    tags: ["docs"],
    summary: "Swagger UI over this document (local files, works offline)",
    description:
      "The page is always served: it holds nothing about this server. When `/openapi.json` needs a key, the page asks for one.",
    responses: {
      200: {
        description: "The HTML page",
        content: { "text/html": { schema: z.string(), example: "<!doctype html>…" } },
      },
    },
  });

  const docsFile = createRoute({
    method: "get",
    path: "/docs/{file}",
    operationId: "docsFile",
    tags: ["docs"],
    summary: "The files of the Swagger UI page",
    request: {
      params: z.object({
        file: z.string().meta({
          description: "One of the page's files.",
          param: { name: "file", in: "path", example: "swagger-ui.css" },
        }),
      }),
    },
    responses: {
      200: {
        description: "The file",
        content: {
          "text/css": { schema: z.string(), example: ".swagger-ui { … }" },
          "text/javascript": { schema: z.string(), example: "window.SwaggerUIBundle = …" },
          "image/png": { schema: z.string().meta({ format: "binary" }), example: "…" },
        },
      },
      404: failure("Not a file of the page", ["NOT_FOUND"], { message: "no such file" }),
    },
  });

  return { health, ready, metrics, openapi, docs, docsFile };
}
