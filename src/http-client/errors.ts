import type { ErrorCode } from "./api-types.ts";

/**
 * What went wrong, for programs: one of the API's codes (`JOB_NOT_FOUND`, `CONFLICT`, …), or
 * one of the client's own: `NETWORK_ERROR` (no answer: refused, reset, DNS…),
 * `UNEXPECTED_RESPONSE` (an answer that is not the API's, such as a proxy's HTML error page),
 * `TIMEOUT` (`waitUntilFinished` gave up).
 */
export type PgwakeErrorCode = ErrorCode | "NETWORK_ERROR" | "UNEXPECTED_RESPONSE" | "TIMEOUT";

/** Every failure of the HTTP client: the API's error, with its code, or the client's own. */
export class PgwakeApiError extends Error {
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  readonly code: PgwakeErrorCode;
  /** The API's `details` (invalid fields, allowed methods, …), or the client's. */
  readonly details: unknown;
  /** `x-request-id` of the failed request: the key to the server's log line. */
  readonly requestId: string | null;
  /** From `Retry-After` (503), in milliseconds. */
  readonly retryAfterMs: number | null;

  constructor(
    message: string,
    fields: {
      status: number;
      code: PgwakeErrorCode;
      details?: unknown;
      requestId?: string | null;
      retryAfterMs?: number | null;
      cause?: unknown;
    },
  ) {
    super(message, { cause: fields.cause });
    this.name = "PgwakeApiError";
    this.status = fields.status;
    this.code = fields.code;
    this.details = fields.details;
    this.requestId = fields.requestId ?? null;
    this.retryAfterMs = fields.retryAfterMs ?? null;
  }

  /** True when the same request may succeed later: no answer, or the server is briefly unable. */
  get transient(): boolean {
    return (
      this.code === "NETWORK_ERROR" ||
      this.status === 503 ||
      this.status === 502 ||
      this.status === 504 ||
      this.status === 429
    );
  }
}
