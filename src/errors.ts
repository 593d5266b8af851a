/** Stable, machine-readable error codes used across the library, the API and the CLI. */
export type ErrorCode =
  | "INVALID_OPTIONS"
  | "INVALID_PAYLOAD"
  | "UNKNOWN_TASK"
  | "SCHEMA_TOO_NEW"
  | "MIGRATION_FAILED"
  | "JOB_TIMEOUT"
  | "RESULT_NOT_JSON"
  | "LEASE_LOST"
  | "CANCELLED"
  | "SHUTDOWN"
  | "HANDLER_ERROR"
  | "DATABASE_UNAVAILABLE";

/** Base class of every error pgwake throws on purpose. */
export class PgwakeError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "PgwakeError";
    this.code = code;
    this.details = options.details;
  }
}

/**
 * Thrown by a handler to fail its job at once, without the remaining retries
 * (a payload that can never succeed, a resource that is gone for good).
 */
export class PermanentError extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "PermanentError";
  }
}

/** What a failed attempt stores in `last_error` and in its `attempt_failed` event. */
export interface SerializedError {
  message: string;
  name: string;
  code?: string;
  stack?: string;
  /** The thrown value itself when it was not an Error (a string, a number, an object). */
  value?: unknown;
}

const MAX_STACK = 8_000;

/** Turns anything a handler may throw into a JSON-safe record. */
export function serializeError(thrown: unknown): SerializedError {
  if (thrown instanceof Error) {
    const code = (thrown as { code?: unknown }).code;
    return {
      name: storable(thrown.name),
      message: storable(thrown.message || thrown.name),
      ...(typeof code === "string" ? { code: storable(code) } : {}),
      ...(thrown.stack ? { stack: storable(thrown.stack.slice(0, MAX_STACK)) } : {}),
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(JSON.stringify(thrown ?? null), (_key, v: unknown) =>
      typeof v === "string" ? storable(v) : v,
    );
  } catch {
    value = storable(String(thrown));
  }
  return {
    name: "NonErrorThrown",
    message: storable(`handler threw a non-Error value: ${describe(thrown)}`),
    value,
  };
}

/** Text jsonb accepts: no U+0000, no lone surrogates (an error must always be recordable). */
function storable(text: string): string {
  return text.replaceAll("\u0000", "\\u0000").toWellFormed();
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.slice(0, 200));
  if (value === null || value === undefined) return String(value);
  try {
    return (JSON.stringify(value) ?? String(value)).slice(0, 200);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
