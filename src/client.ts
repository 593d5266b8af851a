import type { Context } from "@opentelemetry/api";
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
import { DEFAULT_QUEUE, type EnqueuedJob, insertJobs, type NewJob } from "./jobs/enqueue.ts";
import { jobTimeline, type TimelinePage } from "./jobs/events.ts";
import {
  checkQueueLimits,
  type KeyFlow,
  keyFlows,
  type QueueFlow,
  type QueueLimits,
  queueFlows,
  setQueueLimits,
  type WaitReason,
  waitingFor,
} from "./jobs/flowControl.ts";
import { type JobListPage, type ListJobsFilter, listJobs } from "./jobs/list.ts";
import { type QueueStats, queueStats } from "./jobs/queueStats.ts";
import { findUnstorable } from "./jobs/storable.ts";
import type { Job } from "./jobs/types.ts";
import { type Logger, silentLogger } from "./logger.ts";
import type { ScheduleSpec } from "./schedules/definition.ts";
import { ScheduleStore } from "./schedules/store.ts";
import type { UnknownTaskPolicy } from "./settings.ts";
import {
  type AnyTaskDefinition,
  type AnyTaskReference,
  type KnownTask,
  type TaskPayload,
  type TaskPayloads,
  TaskRegistry,
} from "./tasks.ts";
import { carrierOf, inSpan, SpanKind } from "./tracing.ts";
import { Worker, type WorkerOptions } from "./worker/worker.ts";

export interface PgwakeOptions<Tasks extends readonly KnownTask[] = readonly KnownTask[]> {
  /** Postgres to use; or give `pool`. */
  connectionString?: string;
  pool?: pg.Pool;
  /** Schema holding pgwake's tables (default `pgwake`). */
  schema?: string;
  /**
   * The tasks this process knows: definitions (run by its workers) and references to tasks run
   * elsewhere (`defineTaskReference`). Given as a list, `enqueue` is typed by them; at enqueue
   * payloads are validated, task defaults applied, and other task names refused.
   */
  tasks?: Tasks | TaskRegistry;
  /**
   * A task name that none of `tasks` defines: `refuse` (default) throws UNKNOWN_TASK, `warn`
   * logs once per name and enqueues it. Without any `tasks` every name is accepted: the process
   * cannot know which exist.
   */
  unknownTasks?: UnknownTaskPolicy;
  /**
   * `connectionString` goes through a transaction-mode pooler (PgBouncer): no startup parameters,
   * no named prepared statements. Workers made by `worker()` inherit it. Migrate over a direct
   * connection: migrations hold a session lock.
   */
  pooler?: boolean;
  /** The connection fault model's time limit (see `createPool`); default 15 s. */
  networkTimeoutMs?: number;
  logger?: Logger;
}

/** Options of one enqueue; `client` adds the job inside the caller's transaction. */
export interface EnqueueOptions extends Omit<NewJob, "task" | "payload"> {
  client?: Queryable;
  /**
   * The OpenTelemetry context to trace the enqueue under (default: the active one): the job's
   * runs continue its trace.
   */
  traceContext?: Context;
}

/** Task name → submitted payload of a `Pgwake`. */
// biome-ignore lint/suspicious/noExplicitAny: matches a Pgwake of any task list
export type PayloadsOf<P> = P extends Pgwake<infer Tasks> ? TaskPayloads<Tasks> : any;

type Names<Tasks extends readonly KnownTask[]> = keyof TaskPayloads<Tasks> & string;
type InputOf<Tasks extends readonly KnownTask[], Name> = Name extends keyof TaskPayloads<Tasks>
  ? TaskPayloads<Tasks>[Name]
  : unknown;
type OutputOf<Tasks extends readonly KnownTask[], Name> = string extends Tasks[number]["name"]
  ? unknown
  : TaskPayload<Extract<Tasks[number], { name: Name }>>;

/** `{}`: what an absent payload becomes. */
type EmptyPayload = Record<never, never>;

/** The payload may be left out when `{}` is a valid one. */
type PayloadArgs<Input> = EmptyPayload extends Input
  ? [payload?: Input, options?: EnqueueOptions]
  : [payload: Input, options?: EnqueueOptions];

/** One job of `enqueueMany`, typed by its task. */
export type NewJobOf<Tasks extends readonly KnownTask[]> = string extends Tasks[number]["name"]
  ? NewJob
  : {
      [Name in Names<Tasks>]: Omit<NewJob, "task" | "payload"> & {
        task: Name;
      } & (EmptyPayload extends InputOf<Tasks, Name>
          ? { payload?: InputOf<Tasks, Name> }
          : { payload: InputOf<Tasks, Name> });
    }[Names<Tasks>];

const QUEUE_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * The producer side and the admin side of pgwake, over one pool: enqueue (alone, in bulk, or in
 * your transaction), read jobs and their timelines, cancel, retry, pause. `worker()` makes a
 * worker sharing the same settings.
 *
 * Given its tasks as a list (`new Pgwake({ tasks: [sendEmail, resize] })`), `enqueue` and
 * `enqueueMany` accept only those task names, each with its own payload type; `untyped()` is the
 * same client for names known only at run time.
 */
export class Pgwake<const Tasks extends readonly KnownTask[] = readonly KnownTask[]> {
  readonly schema: string;
  /** The tasks this process defines (and its workers run). */
  readonly tasks: TaskRegistry;
  /** Tasks run elsewhere that this process may submit. */
  private readonly references = new Map<string, AnyTaskReference>();
  private readonly unknownTasks: UnknownTaskPolicy;
  private readonly warnedUnknown = new Set<string>();
  readonly pool: pg.Pool;
  private readonly sql: SchemaSql;
  private readonly connectionString: string | undefined;
  private readonly ownsPool: boolean;
  private readonly logger: Logger;
  private closed = false;
  private closing: Promise<void> | undefined;
  /**
   * Concurrent `enqueue` calls share statements. Two in flight keep both of a small server's
   * cores busy (measured better than 4 or 8 for the HTTP API); more would queue on the pool.
   */
  /** Behind a transaction-mode pooler (see `PgwakeOptions.pooler`). */
  readonly pooler: boolean;
  private readonly networkTimeoutMs: number | undefined;
  /**
   * Cron schedules stored in the database: create, list, get (next ticks, recent runs), update,
   * pause, resume, trigger, delete. Their jobs are checked as an enqueue of this client would be.
   */
  readonly schedules: ScheduleStore;
  private readonly declaredSchedules: ScheduleSpec[] = [];
  private readonly submissions = new SubmissionCoalescer(
    (jobs) => insertJobs(this.pool, this.sql, jobs),
    { maxInFlight: 2, maxBatch: 500 },
  );

  constructor(options: PgwakeOptions<Tasks>) {
    if (!options.pool && !options.connectionString) {
      throw new PgwakeError("INVALID_OPTIONS", "give a connectionString or a pool");
    }
    this.schema = options.schema ?? "pgwake";
    this.pooler = options.pooler ?? false;
    this.networkTimeoutMs = options.networkTimeoutMs;
    this.sql = new SchemaSql(this.schema, { pooler: this.pooler });
    if (options.tasks instanceof TaskRegistry) {
      this.tasks = options.tasks;
    } else {
      const known: readonly KnownTask[] = options.tasks ?? [];
      this.tasks = new TaskRegistry(
        known.filter((task): task is AnyTaskDefinition => typeof task.handler === "function"),
      );
      for (const reference of known) {
        if (typeof reference.handler === "function") continue;
        if (this.tasks.has(reference.name) || this.references.has(reference.name)) {
          throw new PgwakeError("INVALID_OPTIONS", `task "${reference.name}" is defined twice`);
        }
        this.references.set(reference.name, reference);
      }
    }
    this.unknownTasks = options.unknownTasks ?? "refuse";
    this.connectionString = options.connectionString;
    this.logger = options.logger ?? silentLogger;
    this.ownsPool = !options.pool;
    this.pool =
      options.pool ??
      createPool(
        {
          connectionString: options.connectionString!,
          max: 10,
          pooler: this.pooler,
          networkTimeoutMs: this.networkTimeoutMs,
        },
        (error) => this.logger.warn({ err: error }, "idle database connection failed"),
      );
    this.schedules = new ScheduleStore(this.pool, this.sql, {
      prepareJob: (job) => this.prepare(job),
    });
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
  async enqueue<Name extends Names<Tasks>>(
    task: Name,
    ...[payload, options = {}]: PayloadArgs<InputOf<Tasks, Name>>
  ): Promise<EnqueuedJob<OutputOf<Tasks, Name>>> {
    const { client, traceContext, ...rest } = options;
    if (this.closed && !client) {
      throw new PgwakeError("DATABASE_UNAVAILABLE", "this Pgwake client is closed");
    }
    const job = this.prepare({ ...rest, task, payload });
    const result = await this.traced([job], traceContext, async ([traced]) =>
      client
        ? (await insertJobs(client, this.sql, [traced!]))[0]!
        : await this.submissions.submit(traced!),
    );
    return result as EnqueuedJob<OutputOf<Tasks, Name>>;
  }

  /** Adds many jobs in one statement; all or none are inserted. Results are in input order. */
  async enqueueMany(
    jobs: readonly NewJobOf<Tasks>[],
    options: { client?: Queryable; traceContext?: Context } = {},
  ): Promise<EnqueuedJob[]> {
    const prepared = jobs.map((job) => this.prepare(job as NewJob));
    return this.traced(prepared, options.traceContext, (traced) =>
      insertJobs(options.client ?? this.pool, this.sql, traced),
    );
  }

  /**
   * An enqueue in a `pgwake.enqueue` span (producer), its trace context stored on each job that
   * carries none, so the job's runs continue the trace.
   */
  private traced<T extends EnqueuedJob | EnqueuedJob[]>(
    jobs: NewJob[],
    parent: Context | undefined,
    insert: (jobs: NewJob[]) => Promise<T>,
  ): Promise<T> {
    const first = jobs[0];
    return inSpan(
      "pgwake.enqueue",
      {
        kind: SpanKind.PRODUCER,
        ...(parent ? { parent } : {}),
        attributes: {
          "messaging.system": "pgwake",
          "messaging.operation.type": "send",
          "messaging.destination.name": first?.queue ?? DEFAULT_QUEUE,
          "messaging.batch.message_count": jobs.length,
          "pgwake.task": first?.task ?? "",
        },
      },
      async (span) => {
        const { traceParent, traceState } = carrierOf(span.spanContext());
        const traced =
          traceParent === null
            ? jobs
            : jobs.map((job) =>
                job.traceParent !== undefined
                  ? job
                  : { ...job, traceParent, ...(traceState ? { traceState } : {}) },
              );
        const result = await insert(traced);
        if (!Array.isArray(result)) {
          span.setAttribute("messaging.message.id", String(result.job.id));
          span.setAttribute("pgwake.duplicate", result.duplicate);
        }
        return result;
      },
    );
  }

  /**
   * This client with `enqueue` typed loosely (any task name, any payload): for names known only
   * at run time. Names are still checked against the known tasks when the job is prepared.
   */
  untyped(): Pgwake {
    return this as unknown as Pgwake;
  }

  /** Whether this process defines the task, or knows it as a task run elsewhere. */
  knowsTask(name: string): boolean {
    return this.tasks.has(name) || this.references.has(name);
  }

  /** Every task name this process knows (its own and references), sorted. */
  knownTaskNames(): string[] {
    return [...this.tasks.names(), ...this.references.keys()].sort();
  }

  /**
   * Validates a job against what the library knows and fills in task defaults. A task name none
   * of the known tasks has is refused with UNKNOWN_TASK (or warned about: `unknownTasks`).
   */
  prepare(job: NewJob): NewJob {
    const queue = job.queue;
    if (queue !== undefined && !QUEUE_NAME.test(queue)) {
      throw new PgwakeError("INVALID_OPTIONS", `invalid queue name ${JSON.stringify(queue)}`);
    }
    if (job.runAt !== undefined && job.delayMs !== undefined) {
      throw new PgwakeError("INVALID_OPTIONS", "give runAt or delayMs, not both");
    }
    checkKey("concurrencyKey", job.concurrencyKey);
    if (job.keyMode !== undefined && !KEY_MODES.has(job.keyMode)) {
      throw new PgwakeError("INVALID_OPTIONS", "keyMode must be retain, active or debounce");
    }
    if (job.keyMode !== undefined && job.keyMode !== "retain" && job.idempotencyKey === undefined) {
      throw new PgwakeError("INVALID_OPTIONS", `keyMode ${job.keyMode} needs an idempotencyKey`);
    }
    // Refused here rather than by Postgres, where one bad job fails the whole batch.
    const unstorable = findUnstorable(job.payload, "payload");
    if (unstorable) {
      throw new PgwakeError("INVALID_PAYLOAD", `${unstorable.path}: ${unstorable.message}`, {
        details: [unstorable],
      });
    }
    const definition = this.tasks.get(job.task) ?? this.references.get(job.task);
    if (!definition) {
      if (!job.task || job.task.length > 128) {
        throw new PgwakeError("INVALID_OPTIONS", "task must be a name of 1 to 128 characters");
      }
      this.checkUnknownTask(job.task);
      return job;
    }
    const payload = this.tasks.has(job.task)
      ? this.tasks.parsePayload(job.task, job.payload ?? {})
      : parseWith(job.task, definition.schema, job.payload ?? {});
    const concurrencyKey = job.concurrencyKey ?? deriveKey(job.task, definition, payload);
    return {
      ...job,
      payload,
      ...(concurrencyKey !== undefined ? { concurrencyKey } : {}),
      queue: job.queue ?? definition.queue,
      priority: job.priority ?? definition.priority,
      maxAttempts: job.maxAttempts ?? definition.maxAttempts,
      timeoutMs: job.timeoutMs ?? definition.timeoutMs,
    };
  }

  /** A task name nothing here defines: refused, or accepted with a warning (once per name). */
  private checkUnknownTask(task: string): void {
    if (this.tasks.size === 0 && this.references.size === 0) return;
    if (this.unknownTasks === "refuse") {
      const known = this.knownTaskNames();
      throw new PgwakeError(
        "UNKNOWN_TASK",
        `unknown task ${JSON.stringify(task)}: this process knows ${known.map((n) => JSON.stringify(n)).join(", ")}`,
        { details: { task, knownTasks: known } },
      );
    }
    if (!this.warnedUnknown.has(task) && this.warnedUnknown.size < 1_000) {
      this.warnedUnknown.add(task);
      this.logger.warn(
        { task, knownTasks: this.knownTaskNames() },
        "enqueued a task this process does not define: a worker elsewhere must run it",
      );
    }
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

  /** One page of jobs, newest first, filtered by queue, statuses and task. */
  listJobs(filter: Partial<ListJobsFilter> = {}): Promise<JobListPage> {
    return listJobs(this.pool, this.sql, { ...filter, limit: filter.limit ?? 50 });
  }

  /** Per queue: counts by status, the oldest ready job's age, the pause flag, its workers. */
  queueStats(): Promise<QueueStats[]> {
    return queueStats(this.pool, this.sql);
  }

  pauseQueue(queue: string): Promise<QueueSettings> {
    return setQueuePaused(this.pool, this.sql, queue, true);
  }

  resumeQueue(queue: string): Promise<QueueSettings> {
    return setQueuePaused(this.pool, this.sql, queue, false);
  }

  /**
   * Sets a queue's limits across every worker, replacing the ones it had (flow control: see
   * `QueueLimits`). Workers apply them from their next claim of the queue, within a second;
   * lowering a limit stops new starts and aborts no running job. Overrides task defaults.
   */
  async setQueueLimits(queue: string, limits: QueueLimits): Promise<QueueFlow> {
    checkQueue(queue);
    checkQueueLimits(limits);
    return setQueueLimits(this.pool, this.sql, queue, limits, "operator");
  }

  /** Removes a queue's limits; task defaults (`queueLimits`) apply again as workers start. */
  async clearQueueLimits(queue: string): Promise<QueueFlow> {
    checkQueue(queue);
    return setQueueLimits(this.pool, this.sql, queue, {}, null);
  }

  /** The limits and their state (running, tokens, throttled jobs) of one queue, or of all. */
  queueLimits(queue?: string): Promise<QueueFlow[]> {
    return queueFlows(this.pool, this.sql, queue);
  }

  /** The busiest concurrency keys of a limited queue: running jobs, tokens, jobs waiting. */
  queueKeys(queue: string, options: { limit?: number } = {}): Promise<KeyFlow[]> {
    return keyFlows(this.pool, this.sql, queue, options.limit ?? 100);
  }

  /**
   * Why a job has not started: its queue paused, its run time ahead, a limit at its maximum
   * (which, with the numbers), or `ready` (waiting for a worker). Null when it is not waiting.
   */
  waitingFor(id: number): Promise<WaitReason | null> {
    return waitingFor(this.pool, this.sql, id);
  }

  /**
   * Declares a schedule in code, like a task's `schedules`: workers made by `worker()` keep the
   * database in step with it as they start. For schedules made at run time (by an operator, per
   * customer), use `schedules.create` instead.
   */
  schedule(spec: ScheduleSpec): this {
    this.declaredSchedules.push(spec);
    return this;
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
      pooler: this.pooler,
      declaredSchedules: [...this.declaredSchedules],
      prepareJob: (job) => this.prepare(job),
      ...(this.networkTimeoutMs !== undefined ? { networkTimeoutMs: this.networkTimeoutMs } : {}),
      ...options,
      connectionString,
      schema: this.schema,
      tasks: options.tasks ?? this.tasks,
    });
  }

  /** Waits for `enqueue` calls under way to be written, then ends the pool (if it owns it). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.submissions.drain();
      if (this.ownsPool) await this.pool.end();
    })();
    return this.closing;
  }
}

const KEY_MODES = new Set(["retain", "active", "debounce"]);

function checkQueue(queue: string): void {
  if (!QUEUE_NAME.test(queue)) {
    throw new PgwakeError("INVALID_OPTIONS", `invalid queue name ${JSON.stringify(queue)}`);
  }
}

function checkKey(field: string, key: unknown): void {
  if (key === undefined) return;
  if (typeof key !== "string" || key.length < 1 || key.length > 255) {
    throw new PgwakeError("INVALID_OPTIONS", `${field} must be a string of 1 to 255 characters`);
  }
}

/** A task's concurrency key for a payload (its `concurrencyKey` function), checked. */
function deriveKey(task: string, definition: KnownTask, payload: unknown): string | undefined {
  if (!definition.concurrencyKey) return undefined;
  const key = definition.concurrencyKey(payload);
  if (key === null || key === undefined) return undefined;
  if (typeof key !== "string" || key.length < 1 || key.length > 255) {
    throw new PgwakeError(
      "INVALID_OPTIONS",
      `task "${task}": its concurrencyKey gave ${JSON.stringify(key)}, not a string of 1 to 255 characters`,
    );
  }
  return key;
}

/** Parses a payload with a task reference's schema (INVALID_PAYLOAD with the issues). */
function parseWith(task: string, schema: AnyTaskReference["schema"], payload: unknown): unknown {
  if (!schema) return payload;
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data;
  throw new PgwakeError("INVALID_PAYLOAD", `invalid payload for task "${task}"`, {
    details: parsed.error.issues.map((issue) => ({
      path: issue.path.map(String).join("."),
      message: issue.message,
      code: issue.code,
    })),
  });
}
