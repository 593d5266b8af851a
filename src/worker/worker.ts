import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type pg from "pg";
import { createPool } from "../db/pool.ts";
import { SchemaSql } from "../db/sql.ts";
import { PermanentError, PgwakeError, type SerializedError, serializeError } from "../errors.ts";
import { DEFAULT_BACKOFF, retryDelayMs } from "../jobs/backoff.ts";
import { claimJobs } from "../jobs/claim.ts";
import { type Completion, completeJobs } from "../jobs/complete.ts";
import { appendEvents, type NewEvent } from "../jobs/events.ts";
import { type Failure, failJobs } from "../jobs/fail.ts";
import { heartbeat, removeWorker, type WorkerInfo } from "../jobs/heartbeat.ts";
import { type MaintenanceResult, runMaintenance } from "../jobs/reaper.ts";
import { returnJobs } from "../jobs/returnJobs.ts";
import { findUnstorable } from "../jobs/storable.ts";
import type { Job } from "../jobs/types.ts";
import { type Logger, silentLogger } from "../logger.ts";
import {
  type AnyTaskDefinition,
  type JobContext,
  type TaskDefinition,
  TaskRegistry,
} from "../tasks.ts";
import { Batcher } from "./batcher.ts";
import { Listener } from "./listener.ts";
import { registerWaiter, stillRunning, unregisterWaiter } from "./wake.ts";

/** How a worker process runs; every field but `tasks` and a database has a default. */
export interface WorkerOptions {
  /** Used for the pool (unless `pool` is given) and for the LISTEN connection. */
  connectionString: string;
  /**
   * A pool to claim and complete on; by default the worker makes and owns one. The worker's own
   * pool fixes its plans (generic, index paths, no JIT: see `createPool`); a pool given here
   * keeps its sessions' settings.
   */
  pool?: pg.Pool;
  schema?: string;
  tasks: TaskRegistry | readonly AnyTaskDefinition[];
  queues?: readonly string[];
  /** Jobs run at once by this process. */
  concurrency?: number;
  /** LISTEN/NOTIFY wake-ups; false polls only (e.g. behind PgBouncer in transaction mode). */
  notify?: boolean;
  /** The fallback poll (jittered ±25%). */
  pollIntervalMs?: number;
  leaseMs?: number;
  heartbeatMs?: number;
  /** A handler's time limit unless the job or the task sets one. */
  defaultTimeoutMs?: number;
  /**
   * After a claim that found some jobs but fewer than it had room for, claim again after this
   * long instead of asking to be woken: under steady load the next jobs are moments away, and
   * one claim then takes them together. A claim that finds nothing still waits for a wake-up.
   * 0 turns it off.
   */
  claimCooldownMs?: number;
  /** Completions and failures wait this long to be written together. */
  flushDelayMs?: number;
  flushBatchSize?: number;
  /** Maintenance (reaper, stale workers, retention) interval, jittered ±25%; 0 turns it off. */
  maintenanceIntervalMs?: number;
  /** Terminal jobs are deleted this long after they finished; null keeps them. */
  retentionMs?: number | null;
  /** Liveness query on the LISTEN connection. */
  livenessMs?: number;
  workerId?: string;
  logger?: Logger;
}

/** How many future run times a worker remembers; the poll covers any beyond. */
const MAX_RUN_TIMES = 64;

const DEFAULTS = {
  schema: "pgwake",
  queues: ["default"],
  concurrency: 16,
  notify: true,
  pollIntervalMs: 2_000,
  leaseMs: 30_000,
  heartbeatMs: 10_000,
  defaultTimeoutMs: 5 * 60_000,
  claimCooldownMs: 5,
  flushDelayMs: 2,
  flushBatchSize: 500,
  maintenanceIntervalMs: 5_000,
  retentionMs: 7 * 24 * 3_600_000,
  livenessMs: 10_000,
} as const;

interface RunningJob {
  job: Job;
  task: TaskDefinition<unknown>;
  controller: AbortController;
  timer: NodeJS.Timeout | undefined;
  startedAt: number;
  /** The outcome no longer belongs to us (cancelled, lease lost, handed back): do not write it. */
  abandoned: boolean;
}

type Outcome = { kind: "completion"; item: Completion } | { kind: "failure"; item: Failure };

export interface WorkerStats {
  claimed: number;
  completed: number;
  failed: number;
  claimQueries: number;
}

/**
 * A worker process's engine: claims ready jobs into free slots, runs their handlers, writes
 * outcomes in batches, keeps leases alive and, in one process at a time, reaps the jobs of
 * dead workers. Wakes on NOTIFY; polls behind it.
 */
export class Worker {
  readonly id: string;
  readonly stats: WorkerStats = { claimed: 0, completed: 0, failed: 0, claimQueries: 0 };
  private readonly sql: SchemaSql;
  private readonly registry: TaskRegistry;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly logger: Logger;
  private readonly opts: Required<
    Omit<WorkerOptions, "pool" | "workerId" | "logger" | "tasks" | "retentionMs">
  > & {
    retentionMs: number | null;
  };
  private readonly running = new Map<number, RunningJob>();
  private readonly outcomes: Batcher<Outcome>;
  private readonly logs: Batcher<NewEvent>;
  private readonly background = new Set<Promise<unknown>>();
  private listener: Listener | undefined;
  private state: "idle" | "running" | "stopping" | "stopped" = "idle";
  private stopping: Promise<void> | undefined;

  // Claim scheduling.
  private claimLoop: Promise<void> | undefined;
  /** There may be ready jobs: claim when a slot is free. */
  private wanted = false;
  private registered = false;
  private unregistering: Promise<unknown> | undefined;
  /** Transactions that may have enqueued unseen while we registered. */
  private watched: string[] = [];
  private watchTimer: NodeJS.Timeout | undefined;
  private watchDelayMs = 2;
  private watchChecking = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private nextRunTimer: NodeJS.Timeout | undefined;
  /** The claim after the cooldown; apart from `nextRunTimer`, which may wait for a retry. */
  private cooldownTimer: NodeJS.Timeout | undefined;
  /** Known future run times (epoch ms, ascending); `nextRunTimer` waits for the first. */
  private runTimes: number[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private maintenanceTimer: NodeJS.Timeout | undefined;
  private claimBackoff = 0;

  constructor(options: WorkerOptions) {
    this.opts = {
      connectionString: options.connectionString,
      schema: options.schema ?? DEFAULTS.schema,
      queues: options.queues?.length ? [...new Set(options.queues)] : DEFAULTS.queues,
      concurrency: options.concurrency ?? DEFAULTS.concurrency,
      notify: options.notify ?? DEFAULTS.notify,
      pollIntervalMs: options.pollIntervalMs ?? DEFAULTS.pollIntervalMs,
      leaseMs: options.leaseMs ?? DEFAULTS.leaseMs,
      heartbeatMs: options.heartbeatMs ?? DEFAULTS.heartbeatMs,
      defaultTimeoutMs: options.defaultTimeoutMs ?? DEFAULTS.defaultTimeoutMs,
      claimCooldownMs: options.claimCooldownMs ?? DEFAULTS.claimCooldownMs,
      flushDelayMs: options.flushDelayMs ?? DEFAULTS.flushDelayMs,
      flushBatchSize: options.flushBatchSize ?? DEFAULTS.flushBatchSize,
      maintenanceIntervalMs: options.maintenanceIntervalMs ?? DEFAULTS.maintenanceIntervalMs,
      retentionMs: options.retentionMs === undefined ? DEFAULTS.retentionMs : options.retentionMs,
      livenessMs: options.livenessMs ?? DEFAULTS.livenessMs,
    };
    if (!(this.opts.concurrency >= 1))
      throw new PgwakeError("INVALID_OPTIONS", "concurrency must be at least 1");
    if (this.opts.heartbeatMs >= this.opts.leaseMs) {
      throw new PgwakeError("INVALID_OPTIONS", "heartbeatMs must be shorter than leaseMs");
    }
    this.id = options.workerId ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    this.sql = new SchemaSql(this.opts.schema);
    this.registry =
      options.tasks instanceof TaskRegistry ? options.tasks : new TaskRegistry(options.tasks);
    if (this.registry.size === 0)
      throw new PgwakeError("INVALID_OPTIONS", "a worker needs at least one task");
    this.logger = (options.logger ?? silentLogger).child({ workerId: this.id });
    this.ownsPool = !options.pool;
    const onPoolError = (error: Error) =>
      this.logger.warn({ err: error }, "idle database connection failed");
    this.pool =
      options.pool ??
      createPool(
        {
          connectionString: this.opts.connectionString,
          max: 4,
          applicationName: "pgwake-worker",
          fixedPlans: true,
        },
        onPoolError,
      );
    this.outcomes = new Batcher<Outcome>({
      write: (items) => this.writeOutcomes(items),
      onWritten: () => this.slotFreed(),
      delayMs: this.opts.flushDelayMs,
      maxBatch: this.opts.flushBatchSize,
      onError: (error, items) =>
        this.logger.error({ err: error, jobs: items.length }, "could not record job outcomes"),
    });
    this.logs = new Batcher<NewEvent>({
      write: (items) => appendEvents(this.pool, this.sql, items),
      delayMs: 20,
      maxBatch: 500,
      onError: (error, items) =>
        this.logger.warn({ err: error, events: items.length }, "could not record job logs"),
    });
  }

  get info(): WorkerInfo {
    return {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      queues: this.opts.queues,
      tasks: this.registry.names(),
      concurrency: this.opts.concurrency,
      listening: this.listener?.connected ?? false,
    };
  }

  /** Jobs running now. */
  get busy(): number {
    return this.running.size;
  }

  /** Whether the LISTEN connection is up (false in poll-only mode). */
  get listening(): boolean {
    return this.listener?.connected ?? false;
  }

  /** Registers the worker, opens the LISTEN connection and starts claiming. */
  async start(): Promise<void> {
    if (this.state !== "idle") throw new PgwakeError("INVALID_OPTIONS", "a worker starts once");
    this.state = "running";
    await this.beat();
    if (this.opts.notify) {
      const channel = this.sql.channel;
      this.listener = new Listener({
        connectionString: this.opts.connectionString,
        channels: [channel, this.sql.controlChannel],
        livenessMs: this.opts.livenessMs,
        logger: this.logger,
        onNotification: (ch, payload) => this.onNotification(ch, payload),
        onConnected: () => {
          // Anything inserted while we were not listening is found by claiming now.
          this.registered = false;
          this.wake();
        },
        onDisconnected: () => {
          // Nobody hears notifications now: spare submitters the cost (best effort, the
          // database may be the thing that went away).
          this.unregister();
        },
      });
      this.listener.start();
    }
    this.schedulePoll();
    this.heartbeatTimer = setInterval(() => this.track(this.beat()), this.opts.heartbeatMs);
    if (this.opts.maintenanceIntervalMs > 0) this.scheduleMaintenance();
    this.logger.info(
      {
        queues: this.opts.queues,
        tasks: this.registry.names(),
        concurrency: this.opts.concurrency,
        notify: this.opts.notify,
      },
      "worker started",
    );
    this.wake();
  }

  /**
   * Stops claiming, lets running jobs finish for up to `graceMs`, then aborts the rest and hands
   * them back without burning their attempt, writes every pending outcome, closes the listener
   * and, last, the pool it owns.
   */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    this.stopping ??= this.shutdown(options.graceMs ?? 10_000);
    return this.stopping;
  }

  private async shutdown(graceMs: number): Promise<void> {
    if (this.state === "idle") {
      this.state = "stopped";
      if (this.ownsPool) await this.pool.end();
      return;
    }
    this.state = "stopping";
    clearTimeout(this.pollTimer);
    clearTimeout(this.nextRunTimer);
    this.runTimes = [];
    clearTimeout(this.cooldownTimer);
    clearTimeout(this.maintenanceTimer);
    clearTimeout(this.watchTimer);
    const listener = this.listener;
    this.listener = undefined;
    await listener?.close();
    await this.claimLoop;

    const deadline = Date.now() + graceMs;
    while (this.running.size > 0 && Date.now() < deadline) {
      await this.waitForSlot(deadline - Date.now());
    }
    if (this.running.size > 0) {
      const left = [...this.running.values()];
      this.logger.warn(
        { jobs: left.length },
        "grace period over: aborting and returning running jobs",
      );
      for (const entry of left)
        this.abandon(entry, new PgwakeError("SHUTDOWN", "worker shut down"));
      await this.safely(
        returnJobs(
          this.pool,
          this.sql,
          this.id,
          left.map((e) => ({ id: e.job.id, attempt: e.job.attempts })),
          "worker shut down before the job finished",
        ),
        "could not return jobs",
      );
    }
    await this.outcomes.flush();
    await this.logs.flush();
    clearInterval(this.heartbeatTimer);
    await Promise.allSettled([...this.background]);
    await this.safely(removeWorker(this.pool, this.sql, this.id), "could not unregister worker");
    this.state = "stopped";
    if (this.ownsPool) await this.pool.end();
    this.logger.info(this.stats, "worker stopped");
  }

  /** Runs one maintenance pass now (normally on a timer). */
  maintain(): Promise<MaintenanceResult> {
    return runMaintenance(this.pool, this.sql, {
      reapBatch: 1_000,
      staleWorkerMs: Math.max(this.opts.leaseMs * 2, this.opts.heartbeatMs * 6),
      retentionMs: this.opts.retentionMs,
      pruneBatch: 1_000,
    });
  }

  // ---- waking and claiming ------------------------------------------------------------------

  private onNotification(channel: string, payload: string): void {
    this.logger.trace({ channel, payload, registered: this.registered }, "notification");
    if (this.state !== "running") return;
    if (channel === this.sql.channel) {
      // `queue` (everyone), `queue<TAB>@delayMs` (a job due later), `queue<TAB>workerId` (a
      // waiter token was spent on that worker: only it wakes). See wake() in 0001_init.sql.
      const [queue = "", target] = payload.split("\t");
      if (!this.opts.queues.includes(queue)) return;
      if (target === undefined) {
        this.wake();
      } else if (target.startsWith("@")) {
        this.scheduleNextRun(Number(target.slice(1)) || 0);
      } else if (target === this.id) {
        // The submitter spent our token. The "somebody waits" flag may stay up meanwhile: the
        // insert trigger then only finds no token (cheap), and maintenance lowers the flag.
        this.registered = false;
        this.wake();
      }
      return;
    }
    const match = /^cancel (\d+)$/.exec(payload);
    if (match && this.running.has(Number(match[1]))) {
      // The heartbeat finds out which jobs we lost and aborts them.
      this.track(this.beat());
    }
  }

  /** Something may be ready: claim as soon as a slot is free. */
  private wake(): void {
    this.wanted = true;
    this.requestClaim();
  }

  private requestClaim(): void {
    if (this.claimLoop || this.state !== "running") return;
    // Coalesce: slots freed in the same tick are filled by one claim.
    this.claimLoop = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.claimUntilIdle())
      .finally(() => {
        this.claimLoop = undefined;
        // Slots freed while the loop was finishing found it busy: pick them up now.
        if (this.wanted && this.freeSlots() > 0) this.requestClaim();
      });
  }

  private async claimUntilIdle(): Promise<void> {
    while (this.wanted && this.state === "running") {
      const free = this.freeSlots();
      if (free <= 0) return; // a finishing job calls us again
      this.wanted = false;
      let jobs: Job[];
      try {
        this.stats.claimQueries++;
        jobs = await claimJobs(this.pool, this.sql, {
          queues: this.opts.queues,
          tasks: this.registry.names(),
          limit: free,
          workerId: this.id,
          leaseMs: this.opts.leaseMs,
        });
        this.claimBackoff = 0;
      } catch (error) {
        this.claimBackoff = Math.min(5_000, Math.max(100, this.claimBackoff * 2));
        this.logger.warn({ err: error, retryInMs: this.claimBackoff }, "claim failed");
        this.scheduleNextRun(this.claimBackoff);
        return;
      }
      this.stats.claimed += jobs.length;
      this.logger.trace({ claimed: jobs.length, free, registered: this.registered }, "claimed");
      for (const job of jobs) this.run(job);
      if (jobs.length === free) {
        // A full batch: more may be waiting. Claim again when slots free up; no NOTIFY needed
        // meanwhile, so stop asking inserters for one.
        this.wanted = true;
        if (this.registered) {
          this.unregister();
        }
      } else if (jobs.length > 0 && this.opts.claimCooldownMs > 0) {
        // Jobs are arriving: take the next ones together in a moment. Asking to be woken now
        // would cost a registration, a NOTIFY and a claim for every few jobs.
        this.cooldownTimer ??= setTimeout(() => {
          this.cooldownTimer = undefined;
          this.wake();
        }, this.opts.claimCooldownMs);
      } else if (!this.registered && this.listener?.connected) {
        // Caught up: ask to be notified, then claim once more for what was committed while the
        // registration became visible.
        // `registered` is set before the token is visible: a submitter may spend the token (and
        // its notification may arrive) while we are still registering, and that must win.
        this.registered = true;
        try {
          await this.unregistering; // a late DELETE must not remove the token we put now
          const inProgress = await registerWaiter(this.pool, this.sql, this.id, this.opts.queues);
          this.logger.trace(
            { inProgress: inProgress.length, registered: this.registered },
            "registered",
          );
          this.wanted = true;
          this.watchTransactions(inProgress);
        } catch (error) {
          this.registered = false;
          this.logger.warn({ err: error }, "could not register for wake-ups; polling");
        }
      }
    }
  }

  /**
   * Claims again whenever some of `xids` end, until all have: they were running when our token
   * became visible and may have enqueued without seeing it. Polls with backoff (2 ms to 100 ms,
   * back to 2 ms whenever new ones are added) and blocks nobody: a transaction left open for
   * minutes only costs this cheap query.
   */
  private watchTransactions(xids: string[]): void {
    this.watched = [...new Set([...this.watched, ...xids])];
    if (this.watched.length === 0) return;
    // New transactions to watch: look again soon, however long older ones have been running.
    this.watchDelayMs = 2;
    if (this.watchChecking) return; // the check under way reschedules with the reset delay
    clearTimeout(this.watchTimer);
    this.watchTimer = setTimeout(() => this.track(this.checkWatched()), this.watchDelayMs);
  }

  private async checkWatched(): Promise<void> {
    this.watchTimer = undefined;
    if (this.state !== "running" || this.watched.length === 0) return;
    this.watchChecking = true;
    const checking = this.watched;
    let still = checking;
    try {
      still = await stillRunning(this.pool, this.sql, checking);
    } catch (error) {
      this.logger.warn({ err: error }, "could not check transactions in progress");
    } finally {
      this.watchChecking = false;
    }
    // Keep what was added while the query ran.
    const added = this.watched.filter((xid) => !checking.includes(xid));
    this.watched = [...still, ...added];
    if (still.length < checking.length) this.wake();
    if (this.watched.length === 0 || this.state !== "running") return;
    this.watchTimer = setTimeout(() => this.track(this.checkWatched()), this.watchDelayMs);
    this.watchDelayMs = Math.min(100, this.watchDelayMs * 2);
  }

  /** Takes our tokens back (we are busy, or cannot hear notifications). */
  private unregister(): void {
    this.registered = false;
    const previous = this.unregistering;
    const done = (async () => {
      await previous;
      await this.safely(
        unregisterWaiter(this.pool, this.sql, this.id),
        "could not unregister waiter",
      );
    })();
    this.unregistering = done;
    this.track(done);
  }

  /**
   * Slots a claim may fill. Outcomes not yet written hold their jobs' leases too: when they pile
   * up beyond a batch (the database is slower than the handlers), claim less until they drain.
   */
  private freeSlots(): number {
    const unwritten = Math.max(0, this.outcomes.pending - this.opts.flushBatchSize);
    return this.opts.concurrency - this.running.size - unwritten;
  }

  private schedulePoll(): void {
    const jitter = 0.75 + Math.random() * 0.5;
    this.pollTimer = setTimeout(() => {
      this.wake();
      this.schedulePoll();
    }, this.opts.pollIntervalMs * jitter);
    this.pollTimer.unref();
  }

  /** A timer to the earliest known future run_at (scheduled jobs, our own retries). */
  private scheduleNextRun(delayMs: number): void {
    const at = Date.now() + delayMs;
    if (this.runTimes.includes(at)) return;
    this.runTimes.push(at);
    this.runTimes.sort((x, y) => x - y);
    if (this.runTimes.length > MAX_RUN_TIMES) this.runTimes.pop();
    if (this.runTimes[0] === at) this.armNextRun();
  }

  /** Sets the timer to the first known run time; when it fires, claims and moves to the next. */
  private armNextRun(): void {
    clearTimeout(this.nextRunTimer);
    const at = this.runTimes[0];
    if (at === undefined) return;
    this.nextRunTimer = setTimeout(
      () => {
        const now = Date.now();
        while (this.runTimes.length > 0 && this.runTimes[0]! <= now) this.runTimes.shift();
        this.armNextRun();
        this.wake();
      },
      Math.max(0, at - Date.now()) + 1,
    );
  }

  private scheduleMaintenance(): void {
    const jitter = 0.75 + Math.random() * 0.5;
    this.maintenanceTimer = setTimeout(() => {
      this.track(
        this.maintain()
          .then((result) => {
            if (result.reaped || result.pruned || result.staleWorkers) {
              this.logger.info(result, "maintenance");
            }
          })
          .catch((error) => this.logger.warn({ err: error }, "maintenance failed"))
          .finally(() => {
            if (this.state === "running") this.scheduleMaintenance();
          }),
      );
    }, this.opts.maintenanceIntervalMs * jitter);
  }

  // ---- running jobs ---------------------------------------------------------------------------

  private run(job: Job): void {
    const task = this.registry.get(job.task);
    if (!task) return; // cannot happen: the claim only takes our tasks
    const entry: RunningJob = {
      job,
      task,
      controller: new AbortController(),
      timer: undefined,
      startedAt: Date.now(),
      abandoned: false,
    };
    this.running.set(job.id, entry);
    const timeoutMs = job.timeoutMs ?? task.timeoutMs ?? this.opts.defaultTimeoutMs;
    entry.timer = setTimeout(() => {
      const error = new PgwakeError("JOB_TIMEOUT", `job timed out after ${timeoutMs} ms`);
      entry.controller.abort(error);
      this.settle(entry, { ok: false, error });
      entry.abandoned = true; // a handler that ignores its signal is reported when it ends
    }, timeoutMs);

    const logger = this.logger.child(jobFields(job));
    const ctx: JobContext = {
      job,
      attempt: job.attempts,
      workerId: this.id,
      signal: entry.controller.signal,
      logger,
      log: (message, data) =>
        this.logs.add({
          jobId: job.id,
          kind: "log",
          attempt: job.attempts,
          workerId: this.id,
          message,
          data,
        }),
    };
    let outcome: Promise<unknown>;
    try {
      const payload = this.registry.parsePayload(job.task, job.payload);
      outcome = Promise.resolve(task.handler(payload, ctx));
    } catch (error) {
      outcome = Promise.reject(
        error instanceof PgwakeError && error.code === "INVALID_PAYLOAD"
          ? new PermanentError(`${error.message}: ${JSON.stringify(error.details)}`, {
              cause: error,
            })
          : error,
      );
    }
    outcome.then(
      (result) => this.settle(entry, { ok: true, result }),
      (error: unknown) => this.settle(entry, { ok: false, error }),
    );
  }

  private settle(
    entry: RunningJob,
    outcome: { ok: true; result: unknown } | { ok: false; error: unknown },
  ): void {
    const current = this.running.get(entry.job.id);
    if (current !== entry) {
      if (!entry.abandoned) return;
      entry.abandoned = false; // log once
      this.logger.warn(
        { ...jobFields(entry.job), ranMs: Date.now() - entry.startedAt },
        "handler finished after its job was taken from it; outcome ignored",
      );
      return;
    }
    clearTimeout(entry.timer);
    this.running.delete(entry.job.id);
    const { job } = entry;
    if (outcome.ok) {
      const result = toJsonResult(outcome.result);
      if (result.ok) {
        this.stats.completed++;
        if (this.logger.isLevelEnabled("debug")) {
          this.logger.debug(
            { ...jobFields(job), ms: Date.now() - entry.startedAt },
            "job completed",
          );
        }
        this.outcomes.add({
          kind: "completion",
          item: { id: job.id, attempt: job.attempts, result: result.value },
        });
      } else {
        this.recordFailure(entry, result.error, false);
      }
    } else {
      this.recordFailure(entry, outcome.error, outcome.error instanceof PermanentError);
    }
    this.slotFreed();
  }

  private recordFailure(entry: RunningJob, thrown: unknown, permanent: boolean): void {
    const { job, task } = entry;
    this.stats.failed++;
    const error: SerializedError = serializeError(thrown);
    const delayMs = retryDelayMs(job.attempts, { ...DEFAULT_BACKOFF, ...task.backoff });
    this.logger.warn(
      { ...jobFields(job), err: error.message, permanent, retryInMs: delayMs },
      "attempt failed",
    );
    this.outcomes.add({
      kind: "failure",
      item: { id: job.id, attempt: job.attempts, error, delayMs, permanent },
    });
  }

  /** Takes a job from its handler: its signal fires and whatever it returns is ignored. */
  private abandon(entry: RunningJob, reason: PgwakeError): void {
    if (this.running.get(entry.job.id) !== entry) return;
    clearTimeout(entry.timer);
    this.running.delete(entry.job.id);
    entry.abandoned = true;
    entry.controller.abort(reason);
    this.logger.warn({ ...jobFields(entry.job), code: reason.code }, reason.message);
    this.slotFreed();
  }

  private slotFreed(): void {
    if (this.state === "running" && this.wanted) this.requestClaim();
    this.slotWaiters.splice(0).forEach((resolve) => {
      resolve();
    });
  }

  private readonly slotWaiters: (() => void)[] = [];

  private waitForSlot(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, timeoutMs));
      this.slotWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  // ---- writing outcomes, leases -----------------------------------------------------------------

  private async writeOutcomes(items: Outcome[]): Promise<void> {
    // A job's log lines land before its outcome, so its timeline reads in order.
    if (this.logs.pending > 0) await this.logs.flush();
    const completions: Completion[] = [];
    const failures: Failure[] = [];
    for (const outcome of items) {
      if (outcome.kind === "completion") completions.push(outcome.item);
      else failures.push(outcome.item);
    }
    const [done, failed] = await Promise.all([
      completions.length
        ? completeJobs(this.pool, this.sql, this.id, completions)
        : new Set<number>(),
      failures.length ? failJobs(this.pool, this.sql, this.id, failures) : [],
    ]);
    if (done.size < completions.length) {
      this.logger.warn(
        { jobs: completions.filter((c) => !done.has(c.id)).map((c) => c.id) },
        "completions ignored: the jobs were no longer held by this worker",
      );
    }
    for (const f of failed) {
      if (f.status === "retrying" && this.opts.queues.includes(f.queue)) {
        const delay = failures.find((x) => x.id === f.id)?.delayMs ?? 0;
        this.scheduleNextRun(delay);
      }
    }
  }

  /** Extends the leases of every job we hold and aborts the ones that were taken from us. */
  private async beat(): Promise<void> {
    const held = [...this.running.keys()];
    for (const outcome of this.outcomes.items()) held.push(outcome.item.id);
    let kept: Set<number>;
    try {
      kept = await heartbeat(this.pool, this.sql, this.info, held, this.opts.leaseMs);
    } catch (error) {
      this.logger.warn({ err: error }, "heartbeat failed");
      return;
    }
    for (const id of held) {
      const entry = this.running.get(id);
      if (entry && !kept.has(id)) {
        this.abandon(
          entry,
          new PgwakeError("CANCELLED", `job ${id} was cancelled or its lease was lost`),
        );
      }
    }
  }

  private track<T>(promise: Promise<T>): void {
    this.background.add(promise);
    void promise.finally(() => this.background.delete(promise));
  }

  private async safely<T>(promise: Promise<T>, message: string): Promise<T | undefined> {
    try {
      return await promise;
    } catch (error) {
      this.logger.warn({ err: error }, message);
      return undefined;
    }
  }
}

/** What every log line about a job carries (the worker id comes from the worker's logger). */
function jobFields(job: Job): Record<string, string | number> {
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
    return {
      ok: false,
      error: new PgwakeError(
        "RESULT_NOT_JSON",
        `handler returned a value that is not JSON: ${(error as Error).message}`,
      ),
    };
  }
}
