import { z } from "zod";
import { PermanentError } from "../errors.ts";
import { defineTask, type JobContext } from "../tasks.ts";

/** Response bodies kept in a job's result (and in a failure message) are cut at this size. */
export const MAX_BODY_BYTES = 64 * 1_024;
const ERROR_BODY_CHARS = 500;
/** Response headers worth keeping in the result; the rest are dropped to keep rows small. */
const KEPT_HEADERS = [
  "content-type",
  "content-length",
  "location",
  "etag",
  "last-modified",
  "retry-after",
  "x-request-id",
];
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

const payload = z.object({
  url: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }),
  /** Default: POST when there is a body, GET otherwise. */
  method: z
    .string()
    .transform((m) => m.toUpperCase())
    .pipe(z.enum(METHODS))
    .optional(),
  headers: z.record(z.string(), z.string()).optional(),
  /** Sent as JSON. */
  body: z.json().optional(),
  timeoutMs: z.int().min(1).max(600_000).default(30_000),
});

export type HttpRequestPayload = z.input<typeof payload>;

/** What a 2xx answer completes the job with. */
export interface HttpRequestResult {
  status: number;
  headers: Record<string, string>;
  /** Parsed JSON when the answer is JSON and fits, else text. */
  body: unknown;
  /** The body was longer than 64 KiB and was cut. */
  truncated: boolean;
}

/** A failed call worth retrying: a 5xx, 408 or 429 answer, a network error or a timeout. */
export class HttpRequestError extends Error {
  readonly code: "HTTP_STATUS" | "HTTP_NETWORK" | "HTTP_TIMEOUT";
  readonly status: number | undefined;

  constructor(
    code: HttpRequestError["code"],
    message: string,
    options: { status?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "HttpRequestError";
    this.code = code;
    this.status = options.status;
  }
}

/**
 * `http.request`: calls a URL and completes with the answer, so any language can use pgwake as a
 * durable webhook/callback queue. Retries what may heal (5xx, 408, 429, network errors,
 * timeouts); fails other 4xx at once, since sending the same request again will not help.
 */
export const httpRequest = defineTask({
  name: "http.request",
  schema: payload,
  example: {
    url: "https://example.com/webhooks/order-paid",
    method: "POST",
    headers: { "x-signature": "…" },
    body: { orderId: 42 },
    timeoutMs: 10_000,
  },
  maxAttempts: 10,
  backoff: { baseMs: 1_000, factor: 2, maxMs: 600_000 },
  handler: (input, ctx) => callUrl(input, ctx),
});

async function callUrl(
  input: z.output<typeof payload>,
  ctx: Pick<JobContext, "signal">,
): Promise<HttpRequestResult> {
  const hasBody = input.body !== undefined;
  const method = input.method ?? (hasBody ? "POST" : "GET");
  const headers = new Headers(input.headers);
  if (hasBody && !headers.has("content-type")) headers.set("content-type", "application/json");
  if (!headers.has("user-agent")) headers.set("user-agent", "pgwake-http-request");
  const timeout = AbortSignal.timeout(input.timeoutMs);
  const signal = AbortSignal.any([ctx.signal, timeout]);

  let response: Response;
  let body: { text: string; truncated: boolean };
  try {
    response = await fetch(input.url, {
      method,
      headers,
      body: hasBody ? JSON.stringify(input.body) : undefined,
      signal,
    });
    body = await readBounded(response, MAX_BODY_BYTES);
  } catch (error) {
    // Our job was taken from us (cancel, shutdown, job timeout): report that reason.
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (timeout.aborted) {
      throw new HttpRequestError(
        "HTTP_TIMEOUT",
        `${method} ${input.url} timed out after ${input.timeoutMs} ms`,
        { cause: error },
      );
    }
    const reason = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new HttpRequestError(
      "HTTP_NETWORK",
      `${method} ${input.url} failed: ${reason?.code ?? reason?.message ?? (error as Error).message}`,
      { cause: error },
    );
  }

  const { status } = response;
  if (status >= 200 && status < 300) {
    return {
      status,
      headers: keptHeaders(response.headers),
      body: decodeBody(body.text, response.headers, body.truncated),
      truncated: body.truncated,
    };
  }
  const excerpt = body.text.slice(0, ERROR_BODY_CHARS);
  const message = `${method} ${input.url} answered ${status}${excerpt ? `: ${excerpt}` : ""}`;
  if (status >= 500 || status === 408 || status === 429) {
    throw new HttpRequestError("HTTP_STATUS", message, { status });
  }
  throw new PermanentError(message);
}

/** Reads at most `limit` bytes of a body and drops the rest without downloading it. */
async function readBounded(
  response: Response,
  limit: number,
): Promise<{ text: string; truncated: boolean }> {
  if (!response.body) return { text: "", truncated: false };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const room = limit - size;
    if (value.byteLength > room) {
      chunks.push(value.subarray(0, room));
      size = limit;
      truncated = true;
      await reader.cancel();
      break;
    }
    chunks.push(value);
    size += value.byteLength;
  }
  const bytes = Buffer.concat(chunks, size);
  // A cut may split a multi-byte character; the decoder replaces the fragment.
  return { text: new TextDecoder().decode(bytes), truncated };
}

function keptHeaders(headers: Headers): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of KEPT_HEADERS) {
    const value = headers.get(name);
    if (value !== null) kept[name] = value;
  }
  return kept;
}

function decodeBody(text: string, headers: Headers, truncated: boolean): unknown {
  const type = headers.get("content-type") ?? "";
  if (!truncated && /\bjson\b/i.test(type) && text.length > 0) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}
