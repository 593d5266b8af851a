import type { z } from "zod";
import { type ApiErrorCode, NOT_READY_RETRY_AFTER_SECONDS, RETRY_AFTER_SECONDS } from "./errors.ts";
import { ErrorResponseSchema, errorSchemaOf } from "./schemas.ts";

// Builders of documented responses, so every route describes a status the same way.

// A type, not an interface: the OpenAPI header type has an index signature.
type HeaderSpec = {
  description: string;
  schema: { type: "string" | "integer" };
};

/** A JSON response: its schema (a zod schema, so the document is generated) and an example. */
export function jsonResponse<S extends z.ZodType>(
  description: string,
  schema: S,
  example: z.input<S>,
  headers?: Record<string, HeaderSpec>,
) {
  return {
    description,
    ...(headers ? { headers } : {}),
    content: { "application/json": { schema, example } },
  };
}

/** An error response that carries only `codes`; the example uses the first. */
export function failure(
  description: string,
  codes: readonly [ApiErrorCode, ...ApiErrorCode[]],
  example: { message: string; details?: unknown; code?: ApiErrorCode },
  headers?: Record<string, HeaderSpec>,
) {
  const { code = codes[0], message, details } = example;
  return jsonResponse(
    description,
    errorSchemaOf(codes),
    { error: { code, message, ...(details !== undefined ? { details } : {}) } },
    headers,
  );
}

/** 400 for a body that is not JSON or not valid. */
export function invalidBody(where: string, field: string, message: string) {
  return failure(
    "The body is not JSON (INVALID_JSON) or a field is invalid (VALIDATION_FAILED, one issue per field)",
    ["VALIDATION_FAILED", "INVALID_JSON"],
    {
      message: `invalid ${where}: ${field}`,
      details: [{ path: field, message, code: "too_big" }],
    },
  );
}

/** 413 and 415: a body over the limit, or not sent as JSON. */
export function bodyRefusals(bodyLimitBytes: number) {
  return {
    413: failure("The body is over the size limit", ["PAYLOAD_TOO_LARGE"], {
      message: `the request body is over the limit of ${bodyLimitBytes} bytes`,
      details: { limitBytes: bodyLimitBytes },
    }),
    415: failure("The body is not sent as application/json", ["UNSUPPORTED_MEDIA_TYPE"], {
      message: "send the body as Content-Type: application/json",
      details: { contentType: "text/plain" },
    }),
  };
}

/** 400 and 404 of the routes that take a job id. */
export function jobIdRefusals() {
  return {
    400: failure("The id is not a positive integer", ["INVALID_ID"], {
      message: "a job id is a positive integer",
      details: { id: "abc" },
    }),
    404: failure("No job has this id", ["JOB_NOT_FOUND"], { message: "no job 1042" }),
  };
}

const RETRY_AFTER = (seconds: number): Record<string, HeaderSpec> => ({
  "Retry-After": {
    description: `Seconds to wait before trying again (${seconds}).`,
    schema: { type: "integer" },
  },
});

/** 401 and 403 of a route that needs a key. */
export const keyRefusals = {
  401: failure(
    "No key, or not sent as `Authorization: Bearer <key>`",
    ["UNAUTHORIZED"],
    { message: "missing Authorization: Bearer <key>" },
    {
      "WWW-Authenticate": {
        description: 'Always `Bearer realm="pgwake"`.',
        schema: { type: "string" },
      },
    },
  ),
  403: failure("The key is not one of the configured keys", ["FORBIDDEN"], {
    message: "the API key is not valid",
  }),
};

/** 503 of a route that needs the database. */
export const unavailable = {
  503: failure(
    `The database is unreachable (DATABASE_UNAVAILABLE, Retry-After ${RETRY_AFTER_SECONDS}), or its schema is not the one this server needs (NOT_READY, Retry-After ${NOT_READY_RETRY_AFTER_SECONDS}: run migrations)`,
    ["DATABASE_UNAVAILABLE", "NOT_READY"],
    { message: "the database is unavailable, try again shortly" },
    RETRY_AFTER(RETRY_AFTER_SECONDS),
  ),
};

/** 405 of every path: the path exists, the method does not. */
export const methodNotAllowed = {
  405: failure(
    "This path does not take this method; `Allow` lists those it takes",
    ["METHOD_NOT_ALLOWED"],
    { message: "DELETE is not allowed here; use GET", details: { allow: ["GET"] } },
    { Allow: { description: "The methods this path takes.", schema: { type: "string" } } },
  ),
};

/** Any other failure: a fault of the server (500 INTERNAL). */
export const unexpected = {
  default: jsonResponse(
    "Any other failure: a fault of the server (500 INTERNAL)",
    ErrorResponseSchema,
    {
      error: { code: "INTERNAL", message: "internal error" },
    },
  ),
};
