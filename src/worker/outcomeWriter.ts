import type pg from "pg";
import type { SchemaSql } from "../db/sql.ts";
import { serializeError } from "../errors.ts";
import { DEFAULT_BACKOFF, retryDelayMs } from "../jobs/backoff.ts";
import { type Completion, completeJobs } from "../jobs/complete.ts";
import { appendEvents, type NewEvent } from "../jobs/events.ts";
import { type FailedJob, type Failure, failJobs } from "../jobs/fail.ts";
import type { Job } from "../jobs/types.ts";
import type { Logger } from "../logger.ts";
import type { TaskRegistry } from "../tasks.ts";
import { Batcher } from "./batcher.ts";
import { jobFields, type RunOutcome } from "./jobRunner.ts";

/** An outcome waiting to be written, with what it takes to count it once written. */
interface Pending {
  job: Job;
  ms: number;
  completion?: Completion;
  failure?: Failure;
}

export interface OutcomeWriterOptions {
  pool: pg.Pool;
  sql: SchemaSql;
  registry: TaskRegistry;
  workerId: () => string;
  logger: Logger;
  /** Outcomes wait this long for company before a write. */
  flushDelayMs: number;
  /** Most outcomes per statement. */
  flushBatchSize: number;
  /** After each write: what the database accepted (the rest were no longer ours). */
  onWritten: (written: {
    completed: Pending[];
    failed: { pending: Pending; result: FailedJob }[];
  }) => void;
}

/**
 * Writes outcomes in batches (a few ms of company, or a full batch at once): completions and
 * failures each in one guarded statement, handler log lines just before them so a timeline reads
 * in order. A batch that hit a transient database error is retried with backoff; its jobs stay
 * leased meanwhile, so nothing is lost if the process dies. The owner of an outcome is checked by
 * the database: a worker that lost a job writes nothing for it.
 */
export class OutcomeWriter {
  private readonly outcomes: Batcher<Pending>;
  private readonly logs: Batcher<NewEvent>;
  private readonly options: OutcomeWriterOptions;

  constructor(options: OutcomeWriterOptions) {
    this.options = options;
    this.outcomes = new Batcher<Pending>({
      write: (items) => this.write(items),
      delayMs: options.flushDelayMs,
      maxBatch: options.flushBatchSize,
      onError: (error, items) =>
        options.logger.error({ err: error, jobs: items.length }, "could not record job outcomes"),
    });
    this.logs = new Batcher<NewEvent>({
      write: (items) => appendEvents(options.pool, options.sql, items),
      delayMs: 20,
      maxBatch: 500,
      onError: (error, items) =>
        options.logger.warn({ err: error, events: items.length }, "could not record job logs"),
    });
  }

  /** Outcomes not yet written. */
  get pending(): number {
    return this.outcomes.pending;
  }

  /** Ids of jobs whose outcome is not written yet (their leases must be kept). */
  pendingIds(): number[] {
    return this.outcomes.items().map((p) => p.job.id);
  }

  add(outcome: RunOutcome): void {
    const { job } = outcome;
    if (outcome.kind === "completed") {
      this.outcomes.add({
        job,
        ms: outcome.ms,
        completion: { id: job.id, attempt: job.attempts, result: outcome.result },
      });
      return;
    }
    const error = serializeError(outcome.error);
    const task = this.options.registry.get(job.task);
    const delayMs = retryDelayMs(job.attempts, { ...DEFAULT_BACKOFF, ...task?.backoff });
    this.options.logger.warn(
      {
        workerId: this.options.workerId(),
        ...jobFields(job),
        err: error.message,
        permanent: outcome.permanent,
        retryInMs: delayMs,
      },
      "attempt failed",
    );
    this.outcomes.add({
      job,
      ms: outcome.ms,
      failure: { id: job.id, attempt: job.attempts, error, delayMs, permanent: outcome.permanent },
    });
  }

  log(event: NewEvent): void {
    this.logs.add(event);
  }

  /** Writes everything now (resolves when written or dropped after a non-transient error). */
  async flush(): Promise<void> {
    await this.logs.flush();
    await this.outcomes.flush();
  }

  /**
   * Gives up on what is not written: the leases of those jobs expire and they run again. With
   * `close` (a shutdown) nothing is written any more; without, outcomes added later still are (a
   * worker that was reaped drops the outcomes of jobs it no longer holds and goes on).
   */
  drop(options: { close: boolean }): number {
    return this.outcomes.clear(options) + this.logs.clear(options);
  }

  private async write(items: Pending[]): Promise<void> {
    const { pool, sql, workerId } = this.options;
    // A job's log lines land before its outcome, so its timeline reads in order.
    if (this.logs.pending > 0) await this.logs.flush();
    const completions = items.filter((p) => p.completion);
    const failures = items.filter((p) => p.failure);
    const id = workerId();
    const [done, failed] = await Promise.all([
      completions.length
        ? completeJobs(
            pool,
            sql,
            id,
            completions.map((p) => p.completion!),
          )
        : new Set<number>(),
      failures.length
        ? failJobs(
            pool,
            sql,
            id,
            failures.map((p) => p.failure!),
          )
        : [],
    ]);
    if (done.size < completions.length) {
      this.options.logger.warn(
        { jobs: completions.filter((p) => !done.has(p.job.id)).map((p) => p.job.id) },
        "completions ignored: the jobs were no longer held by this worker",
      );
    }
    const byId = new Map(failures.map((p) => [p.job.id, p]));
    this.options.onWritten({
      completed: completions.filter((p) => done.has(p.job.id)),
      failed: failed.map((result) => ({ pending: byId.get(result.id)!, result })),
    });
  }
}
