import type pg from "pg";
import { migrate, type SchemaState, schemaState } from "./db/migrate.ts";
import { createPool } from "./db/pool.ts";
import { SchemaSql } from "./db/sql.ts";
import type { Queryable } from "./db/types.ts";
import { PgwakeError } from "./errors.ts";
import { SubmissionCoalescer } from "./jobs/coalescer.ts";
import {
  type CancelledJob,
  cancelJobs,
  getJob,
  type QueueSettings,
  retryJobs,
  setQueuePaused,
} from "./jobs/control.ts";
import { type EnqueuedJob, insertJobs, type NewJob } from "./jobs/enqueue.ts";
import { jobTimeline, type TimelinePage } from "./jobs/events.ts";
import { findUnstorable } from "./jobs/storable.ts";
import type { Job } from "./jobs/types.ts";
import { type Logger, silentLogger } from "./logger.ts";
import { type AnyTaskDefinition, TaskRegistry } from "./tasks.ts";
import { Worker, type WorkerOptions } from "./worker/worker.ts";

export interface PgwakeOptions {
  /** Postgres to use; or give `pool`. */
  connectionString?: string;
  pool?: pg.Pool;
  /** Schema holding pgwake's tables (default `pgwake`). */
  schema?: string;
  /** Known tasks: payloads are validated and task defaults applied at enqueue. */
  tasks?: TaskRegistry | readonly AnyTaskDefinition[];
  logger?: Logger;
}

/** Options of one enqueue; `client` adds the job inside the caller's transaction. */
export interface EnqueueOptions extends Omit<NewJob, "task" | "payload"> {
  client?: Queryable;
}

const QUEUE_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * The producer side and the admin side of pgwake, over one pool: enqueue (alone, in bulk, or in
 * your transaction), read jobs and their timelines, cancel, retry, pause. `worker()` makes a
 * worker sharing the same settings.
 */
export class Pgwake {
  readonly schema: string;
  readonly tasks: TaskRegistry;
  readonly pool: pg.Pool;
  private readonly sql: SchemaSql;
  private readonly connectionString: string | undefined;
  private readonly ownsPool: boolean;
  private readonly logger: Logger;
  private closed = false;
  /**
   * Concurrent `enqueue` calls share statements. Two in flight keep both of a small server's
   * cores busy (measured better than 4 or 8 for the HTTP API); more would queue on the pool.
   */
  private readonly submissions = new SubmissionCoalescer(
    (jobs) => insertJobs(this.pool, this.sql, jobs),
    { maxInFlight: 2, maxBatch: 500 },
  );

  constructor(options: PgwakeOptions) {
    if (!options.pool && !options.connectionString) {
      throw new PgwakeError("INVALID_OPTIONS", "give a connectionString or a pool");
    }
    this.schema = options.schema ?? "pgwake";
    this.sql = new SchemaSql(this.schema);
    this.tasks =
      options.tasks instanceof TaskRegistry ? options.tasks : new TaskRegistry(options.tasks ?? []);
    this.connectionString = options.connectionString;
    this.logger = options.logger ?? silentLogger;
    this.ownsPool = !options.pool;
    this.pool =
      options.pool ??
      createPool({ connectionString: options.connectionString!, max: 10 }, (error) =>
        this.logger.warn({ err: error }, "idle database connection failed"),
      );
  }

  /** Applies pending migrations (safe to call from many processes at once). */
  migrate(): Promise<{ applied: number[]; version: number }> {
    return migrate(this.pool, { schema: this.schema, logger: this.logger });
  }

  schemaState(): Promise<SchemaState> {
    return schemaState(this.pool, this.schema);
  }

  /**
   * Adds one job; resolves once its row is committed. A known task's payload is validated and
   * its defaults applied. With `client`, the job is inserted in that client's transaction.
   * Otherwise calls made at the same time share one statement and one commit (group commit):
   * each still resolves only after its own row is committed, and a job the database refuses
   * fails alone.
   */
  async enqueue<Payload = unknown>(
    task: string,
    payload?: Payload,
    options: EnqueueOptions = {},
  ): Promise<EnqueuedJob<Payload>> {
    const { client, ...rest } = options;
    if (this.closed && !client) {
      throw new PgwakeError("DATABASE_UNAVAILABLE", "this Pgwake client is closed");
    }
    const job = this.prepare({ ...rest, task, payload });
    const result = client
      ? (await insertJobs(client, this.sql, [job]))[0]!
      : await this.submissions.submit(job);
    return result as EnqueuedJob<Payload>;
  }

  /** Adds many jobs in one statement; all or none are inserted. Results are in input order. */
  async enqueueMany(
    jobs: readonly NewJob[],
    options: { client?: Queryable } = {},
  ): Promise<EnqueuedJob[]> {
    const prepared = jobs.map((job) => this.prepare(job));
    return insertJobs(options.client ?? this.pool, this.sql, prepared);
  }

  /** Validates a job against what the library knows and fills in task defaults. */
  prepare(job: NewJob): NewJob {
    const queue = job.queue;
    if (queue !== undefined && !QUEUE_NAME.test(queue)) {
      throw new PgwakeError("INVALID_OPTIONS", `invalid queue name ${JSON.stringify(queue)}`);
    }
    if (job.runAt !== undefined && job.delayMs !== undefined) {
      throw new PgwakeError("INVALID_OPTIONS", "give runAt or delayMs, not both");
    }
    // Refused here rather than by Postgres, where one bad job fails the whole batch.
    const unstorable = findUnstorable(job.payload, "payload");
    if (unstorable) {
      throw new PgwakeError("INVALID_PAYLOAD", `${unstorable.path}: ${unstorable.message}`, {
        details: [unstorable],
      });
    }
    const definition = this.tasks.get(job.task);
    if (!definition) {
      if (!job.task || job.task.length > 128) {
        throw new PgwakeError("INVALID_OPTIONS", "task must be a name of 1 to 128 characters");
      }
      return job;
    }
    const payload = this.tasks.parsePayload(job.task, job.payload ?? {});
    return {
      ...job,
      payload,
      queue: job.queue ?? definition.queue,
      priority: job.priority ?? definition.priority,
      maxAttempts: job.maxAttempts ?? definition.maxAttempts,
      timeoutMs: job.timeoutMs ?? definition.timeoutMs,
    };
  }

  getJob(id: number): Promise<Job | null> {
    return getJob(this.pool, this.sql, id);
  }

  /** A page of a job's timeline (lifecycle steps and handler logs), oldest first. */
  async timeline(
    id: number,
    options: { after?: number; limit?: number } = {},
  ): Promise<TimelinePage | null> {
    const job = await this.getJob(id);
    return job ? jobTimeline(this.pool, this.sql, job, options) : null;
  }

  cancel(ids: readonly number[], reason?: string): Promise<CancelledJob[]> {
    return cancelJobs(this.pool, this.sql, ids, reason);
  }

  retry(ids: readonly number[]): Promise<Job[]> {
    return retryJobs(this.pool, this.sql, ids);
  }

  pauseQueue(queue: string): Promise<QueueSettings> {
    return setQueuePaused(this.pool, this.sql, queue, true);
  }

  resumeQueue(queue: string): Promise<QueueSettings> {
    return setQueuePaused(this.pool, this.sql, queue, false);
  }

  /** A worker for this schema and these tasks; call `start()` on it. */
  worker(options: Partial<Omit<WorkerOptions, "schema">> = {}): Worker {
    const connectionString = options.connectionString ?? this.connectionString;
    if (!connectionString) {
      throw new PgwakeError(
        "INVALID_OPTIONS",
        "a worker needs a connectionString for its LISTEN connection",
      );
    }
    return new Worker({
      logger: this.logger,
      ...options,
      connectionString,
      schema: this.schema,
      tasks: options.tasks ?? this.tasks,
    });
  }

  /** Waits for `enqueue` calls under way to be written, then ends the pool (if it owns it). */
  async close(): Promise<void> {
    this.closed = true;
    await this.submissions.drain();
    if (this.ownsPool) await this.pool.end();
  }
}
