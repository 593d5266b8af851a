import {
  type BatchResult,
  type CancelResult,
  type EventPage,
  type Job,
  type JobEvent,
  type JobPage,
  OPERATIONS,
  type Operations,
  type QueueSettings,
  type QueueStats,
  type Ready,
  type RetryResult,
  type SubmitJob,
  type SubmittedJob,
} from "./api-types.ts";
import { type PollBackoff, pollDelayMs, sleep } from "./backoff.ts";
import { PgwakeApiError } from "./errors.ts";

/**
 * Task names and their payload types (an interface or a type: `{ "send-email": { to: string } }`).
 * The default accepts any task and any payload.
 */
export type TaskMap = object;

/** A job to submit: a task of `Tasks` with its payload type, and the job's options. */
export type JobInput<
  Tasks extends TaskMap = Record<string, unknown>,
  Name extends keyof Tasks & string = keyof Tasks & string,
> = Name extends unknown
  ? Omit<SubmitJob, "task" | "payload"> & { task: Name; payload?: Tasks[Name] }
  : never;

export interface PgwakeClientOptions {
  /** Where the API is, e.g. `http://jobs.internal:3000` (a path prefix is kept). */
  baseUrl: string | URL;
  /** One of the server's API keys; sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** The fetch to use (default: the global one). */
  fetch?: typeof globalThis.fetch;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
}

/** Options of one call. */
export interface CallOptions {
  signal?: AbortSignal;
  /** Sent as `x-request-id`; the server logs it and keeps it on the jobs the call creates. */
  requestId?: string;
}

export interface WaitOptions extends CallOptions, PollBackoff {
  /** Give up after this long, with a `TIMEOUT` error (default 5 minutes; Infinity: never). */
  timeoutMs?: number;
}

/** Statuses a job stays in until someone retries it. */
export const FINISHED_STATUSES: ReadonlySet<Job["status"]> = new Set([
  "completed",
  "failed",
  "cancelled",
]);

type OperationId = keyof Operations;
type Input<K extends OperationId> = {
  params?: Operations[K]["params"];
  query?: Operations[K]["query"];
  headers?: Operations[K]["headers"];
  body?: Operations[K]["body"];
};
type Success<K extends OperationId> = Operations[K]["responses"][Extract<
  keyof Operations[K]["responses"],
  200 | 201
>];

/**
 * A typed client of the pgwake HTTP API, for services that submit and follow jobs over HTTP.
 * Every failure is thrown as a {@link PgwakeApiError} carrying the API's error code.
 *
 * @example
 * const jobs = new PgwakeClient({ baseUrl: "http://localhost:3000", apiKey: process.env.KEY });
 * const { job } = await jobs.submit({ task: "demo.echo", payload: { hello: "world" } });
 * const done = await jobs.waitUntilFinished(job.id);
 * console.log(done.status, done.result);
 */
export class PgwakeClient<Tasks extends TaskMap = Record<string, unknown>> {
  private readonly base: URL;
  private readonly fetch: typeof globalThis.fetch;
  private readonly headers: Record<string, string>;

  constructor(options: PgwakeClientOptions) {
    const base = new URL(options.baseUrl);
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.base = base;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.headers = {
      accept: "application/json",
      ...options.headers,
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
    };
  }

  /** Adds a job; resolves once it is committed. A repeat of an idempotency key returns the first job. */
  submit<Name extends keyof Tasks & string>(
    job: JobInput<Tasks, Name>,
    options: CallOptions & { idempotencyKey?: string } = {},
  ): Promise<SubmittedJob> {
    const { idempotencyKey, ...call } = options;
    return this.call(
      "submitJob",
      {
        body: job as SubmitJob,
        ...(idempotencyKey !== undefined ? { headers: { "idempotency-key": idempotencyKey } } : {}),
      },
      call,
    );
  }

  /** Adds jobs in one statement: all or none. Items answer in the order given. */
  submitBatch(
    jobs: ReadonlyArray<JobInput<Tasks>>,
    options: CallOptions = {},
  ): Promise<BatchResult> {
    return this.call("submitJobs", { body: { jobs: [...jobs] as SubmitJob[] } }, options);
  }

  getJob(id: number, options: CallOptions = {}): Promise<Job> {
    return this.call("getJob", { params: { id } }, options);
  }

  /** One page of jobs, newest first; pass `nextCursor` back as `cursor`. */
  listJobs(
    query: Operations["listJobs"]["query"] = {},
    options: CallOptions = {},
  ): Promise<JobPage> {
    return this.call("listJobs", { query }, options);
  }

  /** Every job matching the filter, newest first, page after page. */
  async *jobs(
    query: Omit<Operations["listJobs"]["query"], "cursor"> = {},
    options: CallOptions = {},
  ): AsyncGenerator<Job> {
    let cursor: number | null | undefined;
    do {
      const page = await this.listJobs({ ...query, ...(cursor ? { cursor } : {}) }, options);
      yield* page.jobs;
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** One page of a job's timeline, oldest first; pass `nextCursor` back as `cursor`. */
  events(
    id: number,
    query: Operations["listJobEvents"]["query"] = {},
    options: CallOptions = {},
  ): Promise<EventPage> {
    return this.call("listJobEvents", { params: { id }, query }, options);
  }

  /** A job's whole timeline, page after page. */
  async *allEvents(
    id: number,
    options: CallOptions & { pageSize?: number } = {},
  ): AsyncGenerator<JobEvent> {
    const { pageSize, ...call } = options;
    let cursor: number | null | undefined;
    do {
      const page = await this.events(
        id,
        { ...(pageSize ? { limit: pageSize } : {}), ...(cursor ? { cursor } : {}) },
        call,
      );
      yield* page.events;
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** Cancels a job that has not finished (409 `CONFLICT` once it has). */
  cancel(id: number, reason?: string, options: CallOptions = {}): Promise<CancelResult> {
    return this.call(
      "cancelJob",
      { params: { id }, body: reason === undefined ? {} : { reason } },
      options,
    );
  }

  /** Sends a failed or cancelled job back to pending with a fresh attempt budget. */
  retry(id: number, options: CallOptions = {}): Promise<RetryResult> {
    return this.call("retryJob", { params: { id }, body: {} }, options);
  }

  /** Every known queue: counts by status, oldest ready age, pause flag, workers. */
  async queues(options: CallOptions = {}): Promise<QueueStats[]> {
    return (await this.call("listQueues", {}, options)).queues;
  }

  /**
   * Pauses a queue. A name no job, worker or task knows is refused (`QUEUE_NOT_FOUND`) unless
   * `create` is set: pausing a queue before its first job.
   */
  pauseQueue(
    name: string,
    options: CallOptions & { create?: boolean } = {},
  ): Promise<QueueSettings> {
    const { create, ...call } = options;
    return this.call(
      "pauseQueue",
      { params: { name }, query: create ? { create: "true" } : {} },
      call,
    );
  }

  resumeQueue(name: string, options: CallOptions = {}): Promise<QueueSettings> {
    return this.call("resumeQueue", { params: { name } }, options);
  }

  /** Resolves when the server answers; no database involved. */
  async health(options: CallOptions = {}): Promise<void> {
    await this.call("health", {}, options);
  }

  /** Resolves when the database answers and its schema is current; else `NOT_READY` or `DATABASE_UNAVAILABLE`. */
  ready(options: CallOptions = {}): Promise<Ready> {
    return this.call("ready", {}, options);
  }

  /**
   * Polls a job until it has finished (completed, failed or cancelled) and returns it, waiting
   * longer between polls as it goes (see {@link PollBackoff}). A server briefly unable to answer
   * (503, no connection) is polled again; any other error is thrown. Past `timeoutMs` it throws
   * `TIMEOUT`, with the job as last seen in `details.job`.
   */
  async waitUntilFinished(id: number, options: WaitOptions = {}): Promise<Job> {
    const { timeoutMs = 300_000, signal, requestId, ...backoff } = options;
    const deadline = Date.now() + timeoutMs;
    let last: Job | undefined;
    for (let poll = 0; ; poll++) {
      let retryAfterMs = 0;
      try {
        last = await this.getJob(id, {
          ...(signal ? { signal } : {}),
          ...(requestId ? { requestId } : {}),
        });
        if (FINISHED_STATUSES.has(last.status)) return last;
      } catch (error) {
        if (!(error instanceof PgwakeApiError) || !error.transient) throw error;
        retryAfterMs = error.retryAfterMs ?? 0;
      }
      const wait = Math.max(pollDelayMs(poll, backoff), retryAfterMs);
      if (Date.now() + wait > deadline) {
        throw new PgwakeApiError(`job ${id} did not finish within ${timeoutMs} ms`, {
          status: 0,
          code: "TIMEOUT",
          details: { job: last ?? null },
        });
      }
      await sleep(wait, signal);
    }
  }

  /** Sends one operation and returns its success body, or throws the API's error. */
  private async call<K extends OperationId>(
    operation: K,
    input: Input<K>,
    options: CallOptions,
  ): Promise<Success<K>> {
    const { method, path } = OPERATIONS[operation];
    const url = new URL(this.pathOf(path, input.params).slice(1), this.base);
    for (const [name, value] of Object.entries(input.query ?? {})) {
      if (value === undefined) continue;
      url.searchParams.set(name, Array.isArray(value) ? value.join(",") : `${value}`);
    }
    const headers: Record<string, string> = { ...this.headers };
    for (const [name, value] of Object.entries(input.headers ?? {})) {
      if (typeof value === "string") headers[name] = value;
    }
    if (options.requestId !== undefined) headers["x-request-id"] = options.requestId;
    if (input.body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetch(url, {
        method,
        headers,
        ...(input.body !== undefined ? { body: JSON.stringify(input.body) } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw new PgwakeApiError(`${method} ${url.pathname}: no answer from ${this.base.origin}`, {
        status: 0,
        code: "NETWORK_ERROR",
        cause: error,
      });
    }
    const requestId = response.headers.get("x-request-id");
    const text = await response.text();
    let body: unknown;
    try {
      body = text === "" ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (response.ok) {
      if (body === undefined) throw unexpected(response, text, requestId);
      return body as Success<K>;
    }
    const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } })
      ?.error;
    if (typeof error?.code !== "string" || typeof error.message !== "string") {
      throw unexpected(response, text, requestId);
    }
    const retryAfter = Number(response.headers.get("retry-after"));
    throw new PgwakeApiError(error.message, {
      status: response.status,
      code: error.code as PgwakeApiError["code"],
      details: error.details,
      requestId,
      retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : null,
    });
  }

  private pathOf(template: string, params: object | undefined): string {
    const values = (params ?? {}) as Record<string, string | number>;
    return template.replaceAll(/\{(\w+)\}/g, (_, name: string) => {
      const value = values[name];
      if (value === undefined) throw new TypeError(`missing path parameter ${name}`);
      return encodeURIComponent(value);
    });
  }
}

function unexpected(response: Response, text: string, requestId: string | null): PgwakeApiError {
  return new PgwakeApiError(
    `unexpected answer ${response.status} ${response.headers.get("content-type") ?? ""}`.trim(),
    {
      status: response.status,
      code: "UNEXPECTED_RESPONSE",
      details: { body: text.slice(0, 500) },
      requestId,
    },
  );
}
