import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isTransientError } from "../db/transient.ts";
import { PgwakeError } from "../errors.ts";
import type { Logger } from "../logger.ts";

/**
 * Machine-readable codes of the HTTP API's error responses: declared once, here; the OpenAPI
 * document's `ErrorCode` schema and the generated client's types come from this list.
 */
export const API_ERROR_CODES = [
  "INVALID_JSON",
  "VALIDATION_FAILED",
  "INVALID_PAYLOAD",
  "UNKNOWN_TASK",
  "INVALID_ID",
  "UNSUPPORTED_MEDIA_TYPE",
  "PAYLOAD_TOO_LARGE",
  "NOT_FOUND",
  "JOB_NOT_FOUND",
  "QUEUE_NOT_FOUND",
  "METHOD_NOT_ALLOWED",
  "UNAUTHORIZED",
  "FORBIDDEN",
  "CONFLICT",
  "DATABASE_UNAVAILABLE",
  "NOT_READY",
  "INTERNAL",
  "SCHEDULE_NOT_FOUND",
  "SCHEDULE_CONFLICT",
  "INVALID_SCHEDULE",
  // Bytes that are not HTTP/1.1 on a connection (src/api/server.ts), answered below the routes.
  "MALFORMED_REQUEST",
] as const;

/** One of {@link API_ERROR_CODES}. */
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

/** The one error body of the API: `{ "error": { code, message, details? } }`. */
export interface ErrorBody {
  error: { code: ApiErrorCode; message: string; details?: unknown };
}

/**
 * An error a route or middleware throws on purpose; `app.onError` renders it. Extends Hono's
 * HTTPException so Hono's own middleware and ours share one path to the client.
 */
export class ApiError extends HTTPException {
  readonly code: ApiErrorCode;
  readonly details: unknown;
  readonly headers: Record<string, string>;

  constructor(
    status: ContentfulStatusCode,
    code: ApiErrorCode,
    message: string,
    options: { details?: unknown; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(status, { message, cause: options.cause });
    this.name = "ApiError";
    this.code = code;
    this.details = options.details;
    this.headers = options.headers ?? {};
  }
}

/** Seconds a client should wait before trying again after a database outage. */
export const RETRY_AFTER_SECONDS = 2;

/** Maps anything thrown while serving a request to the API error it means. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof PgwakeError) {
    switch (error.code) {
      case "INVALID_PAYLOAD":
        return new ApiError(422, "INVALID_PAYLOAD", error.message, { details: error.details });
      case "UNKNOWN_TASK":
        return new ApiError(422, "UNKNOWN_TASK", error.message);
      case "INVALID_OPTIONS":
        return new ApiError(400, "VALIDATION_FAILED", error.message);
      case "DATABASE_UNAVAILABLE":
        return unavailable(error);
      case "SCHEDULE_NOT_FOUND":
        return new ApiError(404, "SCHEDULE_NOT_FOUND", error.message, { details: error.details });
      case "SCHEDULE_CONFLICT":
        return new ApiError(409, "SCHEDULE_CONFLICT", error.message, { details: error.details });
      case "INVALID_SCHEDULE":
        return new ApiError(400, "INVALID_SCHEDULE", error.message, { details: error.details });
      default:
        break;
    }
  }
  if (error instanceof HTTPException) {
    return new ApiError(
      error.status as ContentfulStatusCode,
      codeForStatus(error.status),
      error.message || "request failed",
    );
  }
  if (isTransientError(error)) return unavailable(error);
  const sqlstate = (error as { code?: unknown } | null)?.code;
  // A schema or table that is not there: the database has not been migrated (or was reset).
  // The readiness gate catches this before a route runs; this covers a schema dropped later.
  if (sqlstate === "3F000" || sqlstate === "42P01") return notReady(undefined, error);
  // Data errors raised by Postgres for values that passed our checks (a check constraint, a
  // number out of range) are still the caller's input, never a server fault.
  if (typeof sqlstate === "string" && (sqlstate.startsWith("22") || sqlstate.startsWith("23"))) {
    return new ApiError(400, "VALIDATION_FAILED", "the database refused the values given", {
      details: { sqlstate, reason: (error as Error).message },
      cause: error,
    });
  }
  return new ApiError(500, "INTERNAL", "internal error", { cause: error });
}

function unavailable(cause: unknown): ApiError {
  return new ApiError(
    503,
    "DATABASE_UNAVAILABLE",
    "the database is unavailable, try again shortly",
    {
      headers: { "Retry-After": String(RETRY_AFTER_SECONDS) },
      cause,
    },
  );
}

/** The seconds `/ready` and the readiness gate ask a client to wait while the schema is old. */
export const NOT_READY_RETRY_AFTER_SECONDS = 5;

/**
 * 503 NOT_READY: the database answers but its schema is not the one this code needs.
 * `state` (current and latest versions) goes in the details when known.
 */
export function notReady(
  state: { current: number; latest: number } | undefined,
  cause?: unknown,
): ApiError {
  const message =
    state === undefined
      ? "the database schema is missing: run `pgwake migrate` (or `pgwake start`, which migrates)"
      : state.current > state.latest
        ? `the database schema is at version ${state.current}, newer than this server (${state.latest}): upgrade pgwake`
        : `the database schema is at version ${state.current}, this server needs ${state.latest}: run \`pgwake migrate\` (or \`pgwake start\`, which migrates)`;
  return new ApiError(503, "NOT_READY", message, {
    ...(state !== undefined ? { details: state } : {}),
    headers: { "Retry-After": String(NOT_READY_RETRY_AFTER_SECONDS) },
    cause,
  });
}

function codeForStatus(status: number): ApiErrorCode {
  switch (status) {
    case 400:
      return "VALIDATION_FAILED";
    case 401:
      return "UNAUTHORIZED";
    case 403:
      return "FORBIDDEN";
    case 404:
      return "NOT_FOUND";
    case 405:
      return "METHOD_NOT_ALLOWED";
    case 409:
      return "CONFLICT";
    case 413:
      return "PAYLOAD_TOO_LARGE";
    case 415:
      return "UNSUPPORTED_MEDIA_TYPE";
    case 503:
      return "DATABASE_UNAVAILABLE";
    default:
      return status < 500 ? "VALIDATION_FAILED" : "INTERNAL";
  }
}

/** Renders an API error; the only place error bodies are made. */
export function renderError(c: Context, error: ApiError): Response {
  const body: ErrorBody = {
    error: {
      code: error.code,
      message: error.message,
      ...(error.details !== undefined ? { details: error.details } : {}),
    },
  };
  return c.json(body, error.status as ContentfulStatusCode, error.headers);
}

/** `app.onError`: maps, logs server faults, renders. */
export function errorHandler(logger: Logger) {
  return function onError(error: Error, c: Context): Response {
    const apiError = toApiError(error);
    if (apiError.status >= 500) {
      logger.error(
        { err: apiError.cause ?? error, requestId: c.get("requestId" as never) },
        apiError.code === "DATABASE_UNAVAILABLE" ? "database unavailable" : "request failed",
      );
    }
    return renderError(c, apiError);
  };
}
