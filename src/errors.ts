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
  | "DATABASE_UNAVAILABLE"
  /** No schedule has the name given. */
  | "SCHEDULE_NOT_FOUND"
  /** Refused by a schedule's state: the name is taken, it is defined in code, it kept changing. */
  | "SCHEDULE_CONFLICT"
  /** A schedule definition is invalid (expression, time zone, a setting, its owner); `details` lists the issues. */
  | "INVALID_SCHEDULE";

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
/** Longest message kept: a handler may throw a 10 MB message; the row keeps its start. */
const MAX_MESSAGE = 8_000;
const MAX_VALUE_JSON = 16_000;

/**
 * Turns anything a handler may throw into a JSON-safe record, and never throws itself: a thrown
 * value is hostile input (a non-string `message` or `name`, throwing getters, a Proxy whose every
 * trap throws, cycles, `null`, a 10 MB message). Every read goes through `attempt`, every text is
 * cut to size and made storable.
 */
export function serializeError(thrown: unknown): SerializedError {
  try {
    return serializeUnsafe(thrown);
  } catch {
    return { name: "UnserializableError", message: "handler threw a value that cannot be read" };
  }
}

function serializeUnsafe(thrown: unknown): SerializedError {
  if (attempt(() => thrown instanceof Error, false)) {
    const error = thrown as Error;
    const name = text(
      attempt(() => error.name, undefined),
      "Error",
    );
    const message = text(
      attempt(() => error.message, undefined),
      "",
    );
    const code = attempt(() => (error as { code?: unknown }).code, undefined);
    const stack = attempt(() => error.stack, undefined);
    return {
      name,
      message: message || name,
      ...(typeof code === "string" ? { code: storable(code.slice(0, 200)) } : {}),
      ...(typeof stack === "string" ? { stack: storable(stack.slice(0, MAX_STACK)) } : {}),
    };
  }
  let value: unknown;
  try {
    const json = JSON.stringify(thrown ?? null, (_key, v: unknown) =>
      typeof v === "string" ? storable(v) : typeof v === "bigint" ? v.toString() : v,
    );
    value =
      json === undefined || json.length > MAX_VALUE_JSON ? text(thrown, "") : JSON.parse(json);
  } catch {
    value = text(thrown, "[unreadable]");
  }
  return {
    name: "NonErrorThrown",
    message: storable(`handler threw a non-Error value: ${describe(thrown)}`),
    value,
  };
}

/** `read()`, or `fallback` when reading throws (getters, Proxy traps). */
function attempt<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}

/** Any value as short storable text; `fallback` when it has none or converting it throws. */
function text(value: unknown, fallback: string): string {
  if (typeof value === "string") return storable(value.slice(0, MAX_MESSAGE));
  if (value === undefined || value === null) return fallback;
  const converted = attempt(() => String(value), fallback);
  return storable(converted.slice(0, MAX_MESSAGE));
}

/** Text jsonb accepts: no U+0000, no lone surrogates (an error must always be recordable). */
function storable(value: string): string {
  return value.replaceAll("\u0000", "\\u0000").toWellFormed();
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.slice(0, 200));
  if (value === null || value === undefined) return String(value);
  try {
    return (JSON.stringify(value) ?? String(value)).slice(0, 200);
  } catch {
    return attempt(() => Object.prototype.toString.call(value), "[object]");
  }
}
