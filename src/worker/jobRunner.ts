import { context, type Span, trace } from "@opentelemetry/api";
import { PermanentError, PgwakeError } from "../errors.ts";
import type { NewEvent } from "../jobs/events.ts";
import { findUnstorable } from "../jobs/storable.ts";
import type { Job } from "../jobs/types.ts";
import type { Logger } from "../logger.ts";
import type { JobContext, TaskDefinition, TaskRegistry } from "../tasks.ts";
import { contextFrom, failSpan, runSpan } from "../tracing.ts";

/** How a handler's run ended, as the outcome writer records it. */
export type RunOutcome =
  | { kind: "completed"; job: Job; result: unknown; ms: number }
  | { kind: "failed"; job: Job; error: unknown; permanent: boolean; ms: number };

/** A job whose handler runs now. */
interface RunningJob {
  job: Job;
  task: TaskDefinition<unknown>;
  controller: AbortController;
  timer: NodeJS.Timeout | undefined;
  startedAt: number;
  /** Taken from its handler (cancelled, lease lost, shut down): its outcome is not ours to write. */
  abandoned: boolean;
  /** The run's span, in the trace of the submission (OpenTelemetry). */
  span: Span;
  /** When the handler's time limit ends (performance.now() clock). */
  deadline: number;
  /** Settles when the handler's promise has settled, whatever the job became meanwhile. */
  returned: Promise<void>;
}

export interface JobRunnerOptions {
  registry: TaskRegistry;
  /** A handler's time limit unless the job or its task sets one. */
  defaultTimeoutMs: number;
  logger: Logger;
  workerId: () => string;
  /** Every run that ends with an outcome to write (not abandoned ones). */
  onOutcome: (outcome: RunOutcome) => void;
  /** A slot is free again (an outcome, or an abandoned job). */
  onSlotFreed: (job: Job) => void;
  /** A handler's `ctx.log` line. */
  onLog: (event: NewEvent) => void;
}

/**
 * Runs handlers: one `AbortController` and one timeout per job, the payload checked against the
 * task's schema, the result checked to be storable JSON. Whatever a handler does — returns
 * garbage, throws garbage, never settles, ignores its signal — ends as one outcome or as an
 * abandoned job, never as an exception out of here.
 */
export class JobRunner {
  private readonly running = new Map<number, RunningJob>();
  private readonly perQueue = new Map<string, number>();
  private readonly options: JobRunnerOptions;
  private readonly idleWaiters = new Set<() => void>();
  /** Jobs taken from handlers that have not returned yet. */
  private readonly lingering = new Map<number, RunningJob>();

  constructor(options: JobRunnerOptions) {
    this.options = options;
  }

  get size(): number {
    return this.running.size;
  }

  /** Ids of the jobs whose handlers run now. */
  ids(): number[] {
    return [...this.running.keys()];
  }

  /** Running jobs per queue. */
  countsByQueue(): ReadonlyMap<string, number> {
    return this.perQueue;
  }

  /** Running jobs of one queue. */
  runningIn(queue: string): number {
    return this.perQueue.get(queue) ?? 0;
  }

  private enter(entry: RunningJob): void {
    this.running.set(entry.job.id, entry);
    this.perQueue.set(entry.job.queue, (this.perQueue.get(entry.job.queue) ?? 0) + 1);
  }

  private leave(entry: RunningJob): void {
    this.running.delete(entry.job.id);
    const n = (this.perQueue.get(entry.job.queue) ?? 1) - 1;
    if (n > 0) this.perQueue.set(entry.job.queue, n);
    else this.perQueue.delete(entry.job.queue);
  }

  has(id: number): boolean {
    return this.running.has(id);
  }

  /** Starts a job's handler. */
  run(job: Job): void {
    const { registry, logger } = this.options;
    const task = registry.get(job.task);
    if (!task) {
      // The claim only reads lanes of our tasks; a registry changed under us is a bug, not a crash.
      this.options.onOutcome({
        kind: "failed",
        job,
        error: new PgwakeError("UNKNOWN_TASK", `no handler for task "${job.task}" here`),
        permanent: false,
        ms: 0,
      });
      return;
    }
    const parent = contextFrom(job.traceParent, job.traceState);
    const entry: RunningJob = {
      job,
      task,
      controller: new AbortController(),
      timer: undefined,
      startedAt: performance.now(),
      abandoned: false,
      span: runSpan(job, parent, this.options.workerId()),
      deadline: 0,
      returned: Promise.resolve(),
    };
    this.enter(entry);
    const timeoutMs = job.timeoutMs ?? task.timeoutMs ?? this.options.defaultTimeoutMs;
    entry.deadline = entry.startedAt + timeoutMs;
    entry.timer = setTimeout(() => {
      const error = new PgwakeError("JOB_TIMEOUT", `job timed out after ${timeoutMs} ms`);
      entry.controller.abort(error);
      this.settle(entry, { ok: false, error });
      entry.abandoned = true; // a handler that ignores its signal is reported when it ends
    }, timeoutMs);

    const workerId = this.options.workerId();
    const jobLogger = logger.child({ workerId, ...jobFields(job) });
    const ctx: JobContext = {
      job,
      attempt: job.attempts,
      workerId,
      signal: entry.controller.signal,
      logger: jobLogger,
      log: (message, data) =>
        this.options.onLog({
          jobId: job.id,
          kind: "log",
          attempt: job.attempts,
          workerId,
          message: String(message),
          data,
        }),
    };
    let outcome: Promise<unknown>;
    try {
      const payload = registry.parsePayload(job.task, job.payload);
      // The handler runs in the run's span: its own spans nest under it.
      outcome = context.with(trace.setSpan(parent, entry.span), () =>
        Promise.resolve(task.handler(payload, ctx)),
      );
    } catch (error) {
      outcome = Promise.reject(
        error instanceof PgwakeError && error.code === "INVALID_PAYLOAD"
          ? new PermanentError(`${error.message}: ${JSON.stringify(error.details)}`, {
              cause: error,
            })
          : error,
      );
    }
    entry.returned = outcome.then(
      (result) => this.settle(entry, { ok: true, result }),
      (error: unknown) => this.settle(entry, { ok: false, error }),
    );
    void entry.returned.finally(() => {
      if (this.lingering.get(job.id) === entry) this.lingering.delete(job.id);
    });
  }

  /**
   * Resolves once a job taken from its handler (`abandon`) is no longer run by it here: when the
   * handler returned, or when its time limit ended (a handler that ignores its signal past its
   * timeout is treated as a timed-out one is: its job may run again). At once for a job not
   * taken from a running handler.
   */
  /** Whether a job taken from its handler still runs in it (see `whenReturned`). */
  isLingering(id: number): boolean {
    const entry = this.lingering.get(id);
    return entry !== undefined && entry.deadline > performance.now();
  }

  whenReturned(id: number): Promise<void> {
    const entry = this.lingering.get(id);
    if (!entry) return Promise.resolve();
    const left = entry.deadline - performance.now();
    if (left <= 0) return Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      entry.returned,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, left);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * Takes a job from its handler: its signal fires with `reason` and whatever it returns is
   * ignored. Returns false when it was not running here.
   */
  abandon(id: number, reason: PgwakeError): boolean {
    const entry = this.running.get(id);
    if (!entry) return false;
    clearTimeout(entry.timer);
    this.leave(entry);
    entry.abandoned = true;
    this.lingering.set(id, entry);
    this.abort(entry, reason);
    failSpan(entry.span, reason);
    entry.span.end();
    this.options.logger.warn(
      { workerId: this.options.workerId(), ...jobFields(entry.job), code: reason.code },
      reason.message,
    );
    this.options.onSlotFreed(entry.job);
    this.notifyIdle();
    return true;
  }

  /** Abandons every running job; returns them. */
  abandonAll(reason: PgwakeError): Job[] {
    const jobs = [...this.running.values()].map((e) => e.job);
    for (const job of jobs) this.abandon(job.id, reason);
    return jobs;
  }

  /** Resolves when no handler runs, or after `timeoutMs`. */
  waitIdle(timeoutMs: number): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.idleWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      this.idleWaiters.add(done);
    });
  }

  private settle(
    entry: RunningJob,
    outcome: { ok: true; result: unknown } | { ok: false; error: unknown },
  ): void {
    if (this.running.get(entry.job.id) !== entry) {
      if (!entry.abandoned) return;
      entry.abandoned = false; // log once
      this.options.logger.warn(
        {
          workerId: this.options.workerId(),
          ...jobFields(entry.job),
          ranMs: Math.round(performance.now() - entry.startedAt),
        },
        "handler finished after its job was taken from it; outcome ignored",
      );
      return;
    }
    clearTimeout(entry.timer);
    this.leave(entry);
    const ms = performance.now() - entry.startedAt;
    const { job, span } = entry;
    if (outcome.ok) {
      const result = toJsonResult(outcome.result);
      if (result.ok) {
        span.end();
        this.options.onOutcome({ kind: "completed", job, result: result.value, ms });
      } else {
        failSpan(span, result.error);
        span.end();
        this.options.onOutcome({ kind: "failed", job, error: result.error, permanent: false, ms });
      }
    } else {
      failSpan(span, outcome.error);
      span.end();
      this.options.onOutcome({
        kind: "failed",
        job,
        error: outcome.error,
        permanent: isPermanent(outcome.error),
        ms,
      });
    }
    this.options.onSlotFreed(job);
    this.notifyIdle();
  }

  private abort(entry: RunningJob, reason: PgwakeError): void {
    try {
      entry.controller.abort(reason);
    } catch (error) {
      // An abort listener of the handler's threw: its problem, not the worker's.
      this.options.logger.warn(
        { ...jobFields(entry.job), err: error },
        "an abort listener of the handler threw",
      );
    }
  }

  private notifyIdle(): void {
    if (this.running.size > 0) return;
    for (const done of [...this.idleWaiters]) done();
  }
}

function isPermanent(error: unknown): boolean {
  try {
    return error instanceof PermanentError;
  } catch {
    return false; // a Proxy whose getPrototypeOf trap throws
  }
}

/** What every log line about a job carries (the worker id comes from the worker's logger). */
export function jobFields(job: Job): Record<string, string | number> {
  const fields: Record<string, string | number> = {
    jobId: job.id,
    task: job.task,
    queue: job.queue,
    attempt: job.attempts,
  };
  // The id of the HTTP request that submitted the job follows it into the worker's logs.
  if (job.requestId) fields.requestId = job.requestId;
  return fields;
}

/** Handler results are stored as jsonb: anything JSON.stringify cannot represent faithfully fails. */
function toJsonResult(
  value: unknown,
): { ok: true; value: unknown } | { ok: false; error: PgwakeError } {
  if (value === undefined) return { ok: true, value: null };
  try {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`a ${typeof value} is not JSON`);
    const parsed: unknown = JSON.parse(text);
    // JSON that jsonb refuses (U+0000, lone surrogates, absurd depth) would fail the whole batch.
    const unstorable = findUnstorable(parsed, "result");
    if (unstorable) throw new TypeError(`${unstorable.path} ${unstorable.message}`);
    return { ok: true, value: parsed };
  } catch (error) {
    let reason = "unreadable value";
    try {
      reason = String((error as Error).message);
    } catch {}
    return {
      ok: false,
      error: new PgwakeError(
        "RESULT_NOT_JSON",
        `handler returned a value that is not JSON: ${reason}`,
      ),
    };
  }
}
