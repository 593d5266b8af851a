import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { isDeepStrictEqual } from "node:util";
import type pg from "pg";
import { createPool, SocketTracker } from "../db/pool.ts";
import { SchemaSql, statement } from "../db/sql.ts";
import { PgwakeError } from "../errors.ts";
import type { ClaimedJob } from "../jobs/claim.ts";
import { releaseHolds } from "../jobs/control.ts";
import { DEFAULT_QUEUE, type NewJob } from "../jobs/enqueue.ts";
import { checkQueueLimits, type QueueLimits, setQueueLimits } from "../jobs/flowControl.ts";
import { removeWorker, type WorkerInfo } from "../jobs/heartbeat.ts";
import { returnJobs } from "../jobs/returnJobs.ts";
import { addMinuteCounts, MinuteCounter } from "../jobs/stats.ts";
import type { Job } from "../jobs/types.ts";
import { type Logger, silentLogger } from "../logger.ts";
import type { ScheduleSpec } from "../schedules/definition.ts";
import { ScheduleLoop } from "../schedules/loop.ts";
import { ScheduleMetrics } from "../schedules/metrics.ts";
import { reconcileSchedules, schedulesOfTasks } from "../schedules/reconcile.ts";
import { TaskRegistry } from "../tasks.ts";
import { ClaimScheduler } from "./claimScheduler.ts";
import { JobRunner, type RunOutcome } from "./jobRunner.ts";
import { LeaseKeeper } from "./leaseKeeper.ts";
import { Listener } from "./listener.ts";
import { Maintenance, type MaintenanceService } from "./maintenance.ts";
import { WorkerMetrics } from "./metrics.ts";
import { type ResolvedWorkerOptions, resolveWorkerOptions, type WorkerOptions } from "./options.ts";
import { OutcomeWriter } from "./outcomeWriter.ts";
import { parseWakeNotice, Wakeup } from "./wakeup.ts";

export { type QueueSlots, WORKER_DEFAULTS, type WorkerOptions } from "./options.ts";

/**
 * What the worker as a whole is doing: `idle` (made, not started), `running`, `stopping`,
 * `stopped`. Whether it may claim is the lease keeper's business (`fenced`), and each queue's
 * claims have their own states (ClaimScheduler).
 */
export type WorkerState = "idle" | "running" | "stopping" | "stopped";

/** What `/ready` reports: the worker can take and run jobs now. */
export interface WorkerHealth {
  ready: boolean;
  state: WorkerState;
  /** `live`, or `fenced` while it cannot renew its lease (a silent or lost database). */
  lease: string;
  /** Since the last lease renewal was sent, ms (the database answered it). */
  sinceRenewalMs: number;
  /** LISTEN connection up (always true in poll-only mode). */
  listening: boolean;
  /** Queues whose claim statement has been in flight for longer than the network timeout. */
  stuckQueues: string[];
}

export interface WorkerStats {
  claimed: number;
  completed: number;
  failed: number;
  claimQueries: number;
}

/** Most jobs one claim takes. */
const MAX_CLAIM = 1_000;
/** After grace, how long shutdown may spend handing back and writing (the database may be gone). */
const SHUTDOWN_MARGIN_MS = 3_000;
/** Per-minute counts are written this often. */
const COUNTS_FLUSH_MS = 5_000;

const KNOWN_QUEUES = statement("known_queues", "SELECT name FROM {{schema}}.queues");

/** A claimed job waiting for a slot. */
interface Buffered {
  job: Job;
}

/**
 * A worker process's engine, a composition of parts that each own their timers and promises:
 * one `ClaimScheduler` per queue (when and where to claim), a `JobRunner` (handlers, signals,
 * timeouts), an `OutcomeWriter` (batched, guarded writes), a `LeaseKeeper` (heartbeat and
 * fencing), the `Listener` and `Wakeup` (notifications and tokens), and `Maintenance` (reaper,
 * retention). This class only wires them: it shares the handler slots between queues (round
 * robin over the queues' buffers, each queue within its cap) and runs start and stop.
 */
export class Worker {
  readonly stats: WorkerStats = { claimed: 0, completed: 0, failed: 0, claimQueries: 0 };
  /** Prometheus metrics of this worker (see `WorkerMetrics`). */
  readonly metrics: WorkerMetrics;
  private currentId: string;
  private readonly opts: ResolvedWorkerOptions;
  private readonly sql: SchemaSql;
  private readonly registry: TaskRegistry;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly sockets = new SocketTracker();
  private logger: Logger;
  private readonly baseLogger: Logger;
  private readonly runner: JobRunner;
  private readonly writer: OutcomeWriter;
  private readonly lease: LeaseKeeper;
  private readonly maintenance: Maintenance | undefined;
  private readonly wakeup: Wakeup | undefined;
  private listener: Listener | undefined;
  private readonly schedulers = new Map<string, ClaimScheduler>();
  private readonly buffers = new Map<string, Buffered[]>();
  /** Queues in round-robin order for handing out slots. */
  private order: string[] = [];
  private nextQueue = 0;
  private readonly counts = new MinuteCounter();
  /** Recent completions per queue per second, for the size of claims. */
  private readonly rates = new Map<string, { done: number; rate: number }>();
  private rateTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private countsTimer: NodeJS.Timeout | undefined;
  /** Jobs stopped by a fence, to hand back once the lease is renewed. */
  private fencedJobs: Job[] = [];
  /** Jobs stopped by a fence whose handlers still run: handed back once they return. */
  private readonly awaitingReturn = new Map<number, Job>();
  private state: WorkerState = "idle";
  private readonly taskLimits: Map<string, QueueLimits>;
  private readonly declaredSchedules: readonly ScheduleSpec[] | undefined;
  private readonly prepareJob: ((job: NewJob) => NewJob) | undefined;
  private scheduleLoop: ScheduleLoop | undefined;
  private stopping: Promise<void> | undefined;
  private readonly background = new Set<Promise<unknown>>();

  constructor(options: WorkerOptions) {
    this.opts = resolveWorkerOptions(options);
    const opts = this.opts;
    this.currentId = options.workerId ?? newWorkerId();
    this.sql = new SchemaSql(opts.schema, { pooler: opts.pooler });
    this.registry =
      options.tasks instanceof TaskRegistry ? options.tasks : new TaskRegistry(options.tasks);
    if (this.registry.size === 0)
      throw new PgwakeError("INVALID_OPTIONS", "a worker needs at least one task");
    this.taskLimits = taskQueueLimits(this.registry);
    this.declaredSchedules = options.declaredSchedules;
    this.prepareJob = options.prepareJob;
    this.metrics = new WorkerMetrics(
      {
        running: () => this.runner.size,
        buffered: () => this.buffered,
        listening: () => this.listening,
      },
      options.metricsRegistry,
    );
    this.baseLogger = options.logger ?? silentLogger;
    this.logger = this.baseLogger.child({ workerId: this.currentId });
    this.ownsPool = !options.pool;
    this.pool =
      options.pool ??
      createPool(
        {
          connectionString: opts.connectionString,
          max: opts.poolSize,
          applicationName: "pgwake-worker",
          fixedPlans: true,
          pooler: opts.pooler,
          networkTimeoutMs: opts.networkTimeoutMs,
        },
        (error) => this.logger.warn({ err: error }, "idle database connection failed"),
        this.sockets,
      );
    const workerId = () => this.currentId;
    this.runner = new JobRunner({
      registry: this.registry,
      defaultTimeoutMs: opts.defaultTimeoutMs,
      logger: this.baseLogger,
      workerId,
      onOutcome: (outcome) => this.onOutcome(outcome),
      onSlotFreed: () => this.slotFreed(),
      onLog: (event) => this.writer.log(event),
    });
    this.writer = new OutcomeWriter({
      pool: this.pool,
      sql: this.sql,
      registry: this.registry,
      workerId,
      logger: this.baseLogger,
      flushDelayMs: opts.flushDelayMs,
      flushBatchSize: opts.flushBatchSize,
      onWritten: (written) => this.onWritten(written),
    });
    this.lease = new LeaseKeeper({
      pool: this.pool,
      sql: this.sql,
      leaseMs: opts.leaseMs,
      heartbeatMs: opts.heartbeatMs,
      logger: this.baseLogger,
      info: () => ({ ...this.info, runningByQueue: this.heldByQueue() }),
      held: () => this.heldIds(),
      onLost: (ids) => this.lost(ids),
      onFence: () => this.fence(),
      onRenewed: (reaped) => this.unfence(reaped),
      onHeartbeat: (ok) => this.metrics.renewals.inc({ result: ok ? "ok" : "failed" }),
    });
    if (opts.notify) {
      this.wakeup = new Wakeup({
        pool: this.pool,
        sql: this.sql,
        workerId,
        tasks: this.registry.names(),
        logger: this.baseLogger,
        onRecheck: (queues) => {
          for (const q of queues) {
            if (q === "*") this.track(this.discoverAndClaim());
            else this.scheduler(q)?.request();
          }
        },
      });
    }
    if (opts.maintenanceIntervalMs > 0) {
      this.maintenance = new Maintenance({
        pool: this.pool,
        sql: this.sql,
        logger: this.baseLogger,
        intervalMs: opts.maintenanceIntervalMs,
        retentionMs: opts.retentionMs,
      });
    }
    for (const q of opts.queues ?? []) this.addQueue(q.name);
  }

  /** This worker's id in the fleet (a new one after it was reaped and started over). */
  get id(): string {
    return this.currentId;
  }

  get info(): WorkerInfo {
    return {
      id: this.currentId,
      host: hostname(),
      pid: process.pid,
      queues: this.opts.queues ? this.opts.queues.map((q) => q.name) : ["*"],
      tasks: this.registry.names(),
      concurrency: this.opts.concurrency,
      listening: this.listening,
    };
  }

  /** Jobs running now. */
  get busy(): number {
    return this.runner.size;
  }

  /** Jobs claimed and waiting for a slot. */
  get buffered(): number {
    let n = 0;
    for (const b of this.buffers.values()) n += b.length;
    return n;
  }

  /** Whether the LISTEN connection is up (false in poll-only mode). */
  get listening(): boolean {
    return this.listener?.connected ?? false;
  }

  get workerState(): WorkerState {
    return this.state;
  }

  /** Whether the lease is live (false while fenced: no job runs, no claim is made). */
  get leaseLive(): boolean {
    return this.lease.leaseState === "live";
  }

  /**
   * Whether the worker can take and run jobs now: running, its lease renewed in time (so the
   * database answers), listening (unless poll-only), and no claim stuck on a silent connection.
   * A worker cut off from its database reads as not ready within the lease's fence margin.
   */
  health(): WorkerHealth {
    const now = performance.now();
    const stuckAfter = this.opts.networkTimeoutMs + 1_000;
    const stuckQueues = [...this.schedulers.values()]
      .filter((s) => s.claimingForMs(now) > stuckAfter)
      .map((s) => s.queue);
    const listening = !this.opts.notify || this.listening;
    const lease = this.lease.leaseState;
    const sinceRenewalMs = this.lease.sinceRenewalMs;
    const renewedInTime = sinceRenewalMs < this.opts.heartbeatMs * 2 + this.opts.networkTimeoutMs;
    return {
      ready:
        this.state === "running" &&
        lease === "live" &&
        renewedInTime &&
        listening &&
        stuckQueues.length === 0,
      state: this.state,
      lease,
      sinceRenewalMs: Number.isFinite(sinceRenewalMs) ? Math.round(sinceRenewalMs) : -1,
      listening,
      stuckQueues,
    };
  }

  /** Each served queue's claim state, for health checks and tests. */
  claimStates(): Record<string, string> {
    return Object.fromEntries([...this.schedulers].map(([q, s]) => [q, s.claimState]));
  }

  /** Adds a maintenance service (e.g. schedules) to this worker's loops. */
  addMaintenanceService(service: MaintenanceService): void {
    this.maintenance?.add(service);
  }

  /**
   * Sets the default limits of the task definitions (`queueLimits`) on their queues, unless an
   * operator's limits are in place there.
   */
  private async applyTaskLimits(): Promise<void> {
    for (const [queue, limits] of this.taskLimits) {
      const flow = await setQueueLimits(this.pool, this.sql, queue, limits, "tasks");
      if (flow.source === "operator") {
        this.logger.info(
          { queue },
          "queue limits set by an operator are kept over the task defaults",
        );
      }
    }
  }

  /**
   * Makes the database's code-defined schedules those this deployment declares (its tasks'
   * `schedules` and `declaredSchedules`): created, rewritten when they differ (the last
   * deployment to start wins, logged), and this owner's schedules of the tasks this worker runs
   * deleted once no longer declared. A name defined another way (HTTP, CLI, SQL) is never taken.
   */
  private async reconcileCodeSchedules(): Promise<void> {
    const specs = [...schedulesOfTasks(this.registry), ...(this.declaredSchedules ?? [])];
    const result = await reconcileSchedules(this.pool, this.sql, specs, {
      owner: this.opts.scheduleOwner,
      pruneTasks: this.registry.names(),
      ...(this.prepareJob ? { prepareJob: this.prepareJob } : { tasks: this.registry }),
    });
    const { created, updated, deleted, conflicts } = result;
    if (created.length + updated.length + deleted.length > 0) {
      this.logger.info({ created, updated, deleted }, "code schedules written");
    }
    if (conflicts.length > 0) {
      this.logger.warn(
        { conflicts },
        "schedules declared in code have names already used by schedules defined over HTTP, the CLI or SQL: those are kept",
      );
    }
  }

  /** Registers the worker, opens the LISTEN connection and starts claiming. */
  async start(): Promise<void> {
    if (this.state !== "idle") throw new PgwakeError("INVALID_OPTIONS", "a worker starts once");
    this.state = "running";
    try {
      await this.lease.start();
      await this.applyTaskLimits();
      await this.reconcileCodeSchedules();
      if (!this.opts.queues) await this.discoverQueues();
    } catch (error) {
      this.state = "stopped";
      await this.lease.stop();
      // A worker that never started holds no job: its row goes, or it would show as a live
      // worker until its lease ran out.
      await within(
        removeWorker(this.pool, this.sql, this.currentId, false).catch(() => undefined),
        SHUTDOWN_MARGIN_MS,
      );
      await this.closePool(0);
      throw error;
    }
    if (this.wakeup) {
      this.listener = new Listener({
        connectionString: this.opts.listenConnectionString,
        channels: [this.sql.channel, this.sql.controlChannel],
        livenessMs: this.opts.livenessMs,
        logger: this.logger,
        onNotification: (channel, payload) => this.onNotification(channel, payload),
        onConnected: (pid) => {
          this.wakeup?.setListener(pid);
          if (!this.opts.queues) this.wakeup?.put("*");
          // Anything submitted while we were not listening is found by claiming now.
          for (const s of this.schedulers.values()) s.request();
        },
        onDisconnected: () => {
          this.metrics.reconnects.inc();
          this.wakeup?.setListener(undefined);
        },
      });
      this.listener.start();
    }
    this.maintenance?.start();
    if (this.opts.schedules) {
      const metrics = new ScheduleMetrics(this.metrics.registry);
      this.scheduleLoop = new ScheduleLoop(this.pool, this.sql, {
        logger: this.logger,
        onPass: (result) => metrics.observe(result),
      });
      this.scheduleLoop.start();
    }
    this.schedulePoll();
    this.rateTimer = setInterval(() => this.updateRates(), 250);
    this.countsTimer = setInterval(() => this.track(this.flushCounts()), COUNTS_FLUSH_MS);
    this.logger.info(
      {
        queues: this.opts.queues ?? "*",
        tasks: this.registry.names(),
        concurrency: this.opts.concurrency,
        notify: this.opts.notify,
      },
      "worker started",
    );
    for (const s of this.schedulers.values()) s.request({ sweep: true });
  }

  /**
   * Stops claiming, hands back jobs claimed but not started, lets running jobs finish for up to
   * `graceMs`, then aborts the rest and hands them back without burning their attempt, writes
   * every pending outcome, and closes the listener and the pool it owns. Resolves within
   * grace + a few seconds whatever the database does: what could not be written is left to the
   * lease (the jobs run again) and logged.
   */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    this.stopping ??= this.shutdown(options.graceMs ?? 10_000);
    return this.stopping;
  }

  /** Runs every maintenance service once now (normally on their timers). */
  maintain(): Promise<Record<string, unknown>> {
    const maintenance =
      this.maintenance ??
      new Maintenance({
        pool: this.pool,
        sql: this.sql,
        logger: this.logger,
        intervalMs: 1_000,
        retentionMs: this.opts.retentionMs,
      });
    return maintenance.runOnce();
  }

  // ---- queues and claims --------------------------------------------------------------------

  private scheduler(queue: string): ClaimScheduler | undefined {
    const existing = this.schedulers.get(queue);
    if (existing || this.opts.queues || this.state !== "running" || queue === "*") return existing;
    // A worker of every queue meets a new one.
    return this.addQueue(queue);
  }

  private addQueue(queue: string): ClaimScheduler {
    const existing = this.schedulers.get(queue);
    if (existing) return existing;
    const scheduler = new ClaimScheduler({
      queue,
      tasks: this.registry.names(),
      pool: this.pool,
      sql: this.sql,
      workerId: () => this.currentId,
      logger: this.logger,
      wakeup: this.wakeup,
      claimCooldownMs: this.opts.claimCooldownMs,
      room: () => this.room(queue),
      onClaimed: (jobs) => this.claimed(queue, jobs),
      onClaimMeasured: ({ ms, size, sweep }) => {
        this.metrics.claims.inc({ queue, kind: sweep ? "sweep" : "forward" });
        this.metrics.claimDuration.observe({ queue }, ms / 1_000);
        this.metrics.claimSize.observe({ queue }, size);
      },
    });
    this.schedulers.set(queue, scheduler);
    this.buffers.set(queue, []);
    this.order.push(queue);
    this.wakeup?.setKnownQueues([...this.schedulers.keys()]);
    if (this.state === "running" && this.lease.leaseState !== "fenced") {
      scheduler.request({ sweep: true });
    }
    return scheduler;
  }

  /** Meets queues that appeared, and claims from every queue. */
  private async discoverAndClaim(): Promise<void> {
    try {
      await this.discoverQueues();
    } catch (error) {
      this.logger.debug({ err: error }, "could not read the queues");
    }
    for (const s of this.schedulers.values()) s.request();
  }

  private async discoverQueues(): Promise<void> {
    const { rows } = await this.pool.query<{ name: string }>(this.sql.bind(KNOWN_QUEUES));
    const before = this.schedulers.size;
    for (const { name } of rows) this.addQueue(name);
    // The `*` token leaves out the queues we now know: put it again with the new list.
    if (this.schedulers.size > before && this.wakeup?.holds("*")) {
      this.wakeup.take("*");
      this.wakeup.put("*");
    }
  }

  /** The cap of a queue's running jobs. */
  private cap(queue: string): number {
    const slots = this.opts.queues?.find((q) => q.name === queue)?.slots;
    return Math.min(this.opts.concurrency, slots ?? this.opts.concurrency);
  }

  /** Jobs the worker wants claimed ahead of its free slots for a queue: its recent rate × buffer. */
  private bufferTarget(queue: string): number {
    const rate = this.rates.get(queue)?.rate ?? 0;
    const target = Math.round((rate * this.opts.bufferMs) / 1_000);
    return Math.min(MAX_CLAIM, Math.max(this.opts.bufferMs > 0 ? this.cap(queue) : 0, target));
  }

  /**
   * How many jobs a queue may claim now: its free slots plus its buffer target, less what it has
   * buffered, and less outcomes piling up beyond a batch (their jobs hold leases too: when the
   * database is slower than the handlers, claim less until they drain). Below half the buffer
   * target the claim waits for more room, so fast jobs are claimed in large batches.
   */
  private room(queue: string): number {
    if (this.state !== "running" || this.lease.leaseState !== "live") return 0;
    const running = this.runner.runningIn(queue);
    const buffered = this.buffers.get(queue)?.length ?? 0;
    const freeSlots = Math.max(
      0,
      Math.min(this.cap(queue) - running, this.opts.concurrency - this.runner.size),
    );
    // A limited queue is claimed for free slots only: a buffered job would hold one of the
    // queue's slots (or tokens) fleet-wide without running, and start later whatever the limit
    // is then.
    const target = this.schedulers.get(queue)?.isLimited ? 0 : this.bufferTarget(queue);
    const unwritten = Math.max(0, this.writer.pending - this.opts.flushBatchSize);
    const room = Math.min(MAX_CLAIM, freeSlots + target - buffered - unwritten);
    if (room <= 0) return 0;
    if (buffered > 0 && room < Math.max(1, target / 2)) return 0;
    return room;
  }

  private claimed(queue: string, jobs: ClaimedJob[]): void {
    this.stats.claimed += jobs.length;
    this.stats.claimQueries++;
    if (this.lease.leaseState === "fenced") {
      // Fenced while the claim was in flight: hand them back with the others once renewed.
      this.fencedJobs.push(...jobs.map((c) => c.job));
      return;
    }
    if (this.state !== "running") {
      this.track(
        this.handBack(
          jobs.map((c) => c.job),
          "the worker stopped before the job started",
        ),
      );
      return;
    }
    const buffer = this.buffers.get(queue)!;
    for (const { job } of jobs) buffer.push({ job });
    this.dispatch();
  }

  /** Starts buffered jobs while slots are free, taking queues in turn. */
  private dispatch(): void {
    if (this.state !== "running") return;
    let free = this.opts.concurrency - this.runner.size;
    if (free <= 0 || this.order.length === 0) return;
    let idleRounds = 0;
    while (free > 0 && idleRounds < this.order.length) {
      const queue = this.order[this.nextQueue % this.order.length]!;
      this.nextQueue = (this.nextQueue + 1) % this.order.length;
      const buffer = this.buffers.get(queue)!;
      if (buffer.length === 0 || this.runner.runningIn(queue) >= this.cap(queue)) {
        idleRounds++;
        continue;
      }
      idleRounds = 0;
      const { job } = buffer.shift()!;
      free--;
      this.metrics.started.inc({ queue: job.queue, task: job.task });
      this.metrics.wait.observe({ queue: job.queue }, waitOf(job) / 1_000);
      this.runner.run(job);
    }
    for (const s of this.schedulers.values()) s.roomAvailable();
  }

  private slotFreed(): void {
    this.dispatch();
  }

  // ---- outcomes ------------------------------------------------------------------------------

  private onOutcome(outcome: RunOutcome): void {
    if (outcome.kind === "completed") this.stats.completed++;
    else this.stats.failed++;
    const rate = this.rates.get(outcome.job.queue);
    if (rate) rate.done++;
    else this.rates.set(outcome.job.queue, { done: 1, rate: 0 });
    this.writer.add(outcome);
  }

  private onWritten(
    written: Parameters<ConstructorParameters<typeof OutcomeWriter>[0]["onWritten"]>[0],
  ): void {
    // Claims wait while outcomes pile up beyond a batch (room()): written, they make room.
    for (const s of this.schedulers.values()) s.roomAvailable();
    // A limited queue's slots were released with these outcomes: claim its next jobs now.
    const released = new Set<string>();
    for (const { job } of written.completed) released.add(job.queue);
    for (const { pending } of written.failed) released.add(pending.job.queue);
    for (const queue of released) {
      const scheduler = this.schedulers.get(queue);
      if (scheduler?.isLimited) scheduler.request();
    }
    for (const { job, ms } of written.completed) {
      this.metrics.completed.inc({ queue: job.queue, task: job.task });
      this.metrics.duration.observe(
        { queue: job.queue, task: job.task, outcome: "completed" },
        ms / 1_000,
      );
      this.counts.add(job.queue, finishedAt(job, ms), {
        completed: 1,
        runMs: ms,
        waitMs: waitOf(job),
      });
    }
    for (const { pending, result } of written.failed) {
      const { job, ms } = pending;
      const retried = result.status !== "failed";
      this.metrics.failed.inc({ queue: job.queue, task: job.task, final: String(!retried) });
      this.metrics.duration.observe(
        { queue: job.queue, task: job.task, outcome: "failed" },
        ms / 1_000,
      );
      this.counts.add(job.queue, finishedAt(job, ms), {
        failed: retried ? 0 : 1,
        retried: retried ? 1 : 0,
        runMs: ms,
        waitMs: waitOf(job),
      });
      // Our own retry: claim it when it is due (promoted by that claim).
      if (result.status === "retrying") {
        this.schedulers.get(result.queue)?.dueAt(result.runAt.getTime());
      } else if (result.status === "pending") {
        this.schedulers.get(result.queue)?.request();
      }
    }
  }

  private async flushCounts(): Promise<void> {
    if (this.counts.size === 0) return;
    const counts = this.counts.take();
    try {
      await addMinuteCounts(this.pool, this.sql, counts);
    } catch (error) {
      this.counts.restore(counts);
      this.logger.debug({ err: error }, "could not write per-minute counts");
    }
  }

  private updateRates(): void {
    for (const entry of this.rates.values()) {
      const now = entry.done * 4; // per second over the 250 ms window
      entry.rate = entry.rate === 0 ? now : entry.rate * 0.7 + now * 0.3;
      entry.done = 0;
    }
  }

  // ---- leases ------------------------------------------------------------------------------

  private heldIds(): number[] {
    const ids = this.runner.ids();
    for (const buffer of this.buffers.values()) for (const b of buffer) ids.push(b.job.id);
    ids.push(...this.writer.pendingIds());
    return ids;
  }

  private heldByQueue(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [queue, n] of this.runner.countsByQueue()) out[queue] = n;
    for (const [queue, buffer] of this.buffers) {
      if (buffer.length > 0) out[queue] = (out[queue] ?? 0) + buffer.length;
    }
    return out;
  }

  /** Jobs we no longer hold (cancelled, or taken back after our lease ran out). */
  private lost(ids: number[]): void {
    this.metrics.lost.inc(ids.length);
    const gone = new Set(ids);
    for (const buffer of this.buffers.values()) {
      for (let i = buffer.length - 1; i >= 0; i--)
        if (gone.has(buffer[i]!.job.id)) buffer.splice(i, 1);
    }
    for (const id of ids) {
      this.runner.abandon(
        id,
        new PgwakeError("CANCELLED", `job ${id} was cancelled or its lease was lost`),
      );
    }
    // A cancelled job's slot stays taken until its handler returned: give it back then (a job
    // lost to the reaper holds none, and the statement finds nothing).
    const lingering = ids.filter((id) => this.runner.isLingering(id));
    this.track(this.releaseHolds(ids.filter((id) => !lingering.includes(id))));
    for (const id of lingering) {
      this.track(this.runner.whenReturned(id).then(() => this.releaseHolds([id])));
    }
  }

  private async releaseHolds(ids: number[]): Promise<void> {
    if (ids.length === 0) return;
    try {
      const queues = await releaseHolds(this.pool, this.sql, this.currentId, ids);
      for (const queue of queues) this.schedulers.get(queue)?.request();
    } catch (error) {
      this.logger.warn(
        { err: error, jobs: ids },
        "could not give back the slots of cancelled jobs: they are given back when this worker stops or is reaped",
      );
    }
  }

  /** The lease could not be renewed in time: stop every job and every claim. */
  private fence(): void {
    this.metrics.fences.inc();
    for (const s of this.schedulers.values()) s.fence();
    const stopped = this.runner.abandonAll(
      new PgwakeError("LEASE_LOST", "the worker could not renew its lease: job stopped"),
    );
    const buffered = [...this.buffers.values()].flatMap((b) => b.splice(0).map((x) => x.job));
    this.fencedJobs.push(...stopped, ...buffered);
  }

  /** The lease was renewed after a fence; a reaped worker starts over under a new id. */
  private async unfence(reaped: boolean): Promise<void> {
    const jobs = this.fencedJobs.splice(0);
    if (reaped) {
      this.currentId = newWorkerId();
      this.logger = this.baseLogger.child({ workerId: this.currentId });
      // Outcomes of jobs we no longer hold would be refused anyway; later ones are written.
      this.writer.drop({ close: false });
      try {
        await this.lease.reregister();
      } catch (error) {
        this.logger.warn({ err: error }, "could not register again; retrying with the heartbeat");
        return;
      }
      this.logger.warn("started over under a new id");
    } else if (jobs.length > 0) {
      // Still ours: hand them back untouched so others can run them. A job whose handler has
      // not returned from its signal yet stays running under our lease, holding its slot, until
      // it returns (or runs out its time limit): it must not run beside its next attempt.
      const reason = "the worker lost its database connection while holding the job";
      const lingering = jobs.filter((job) => this.runner.isLingering(job.id));
      for (const job of lingering) {
        this.awaitingReturn.set(job.id, job);
        this.track(
          this.runner.whenReturned(job.id).then(async () => {
            if (this.awaitingReturn.delete(job.id)) await this.handBack([job], reason);
          }),
        );
      }
      await this.handBack(
        jobs.filter((job) => !lingering.includes(job)),
        reason,
      );
    }
    if (this.state !== "running") return;
    if (this.listener?.connected && !this.opts.queues) this.wakeup?.put("*");
    for (const s of this.schedulers.values()) s.resume();
  }

  private async handBack(jobs: Job[], reason: string): Promise<void> {
    if (jobs.length === 0) return;
    try {
      await returnJobs(
        this.pool,
        this.sql,
        this.currentId,
        jobs.map((j) => ({ id: j.id, attempt: j.attempts })),
        reason,
      );
    } catch (error) {
      this.logger.warn(
        { err: error, jobs: jobs.length },
        "could not hand jobs back: they run again when the lease expires",
      );
    }
  }

  // ---- notifications and polling -----------------------------------------------------------

  private onNotification(channel: string, payload: string): void {
    if (this.state !== "running") return;
    if (channel === this.sql.controlChannel) {
      let message: { cancel?: unknown; queue?: unknown };
      try {
        message = JSON.parse(payload) as typeof message;
      } catch {
        return;
      }
      const id = message.cancel;
      if (typeof id === "number" && (this.runner.has(id) || this.isBuffered(id))) {
        // The heartbeat finds out which jobs we lost and stops them.
        this.track(this.lease.beat());
      }
      if (typeof message.queue === "string") {
        // A queue's limits changed: claim it now, under the new limits (the claim says whether
        // it is limited, and the scheduler switches paths). Without NOTIFY, the next poll does.
        this.scheduler(message.queue)?.request({ tasks: null, sweep: true });
      }
      return;
    }
    const notice = parseWakeNotice(payload, this.currentId);
    if (!notice) return;
    if (notice.kind === "due") {
      this.scheduler(notice.queue)?.dueAt(notice.atMs);
      return;
    }
    if (notice.spent) this.wakeup?.spent(notice.spent);
    this.scheduler(notice.queue)?.request({ tasks: notice.tasks, sweep: notice.sweep });
    if (notice.spent === "*") this.wakeup?.put("*");
  }

  private isBuffered(id: number): boolean {
    for (const buffer of this.buffers.values())
      if (buffer.some((b) => b.job.id === id)) return true;
    return false;
  }

  private schedulePoll(): void {
    const jitter = 0.75 + Math.random() * 0.5;
    this.pollTimer = setTimeout(() => {
      if (this.state !== "running") return;
      if (this.opts.queues) for (const s of this.schedulers.values()) s.request();
      else this.track(this.discoverAndClaim());
      this.schedulePoll();
    }, this.opts.pollIntervalMs * jitter);
  }

  // ---- shutdown ------------------------------------------------------------------------------

  private async shutdown(graceMs: number): Promise<void> {
    if (this.state === "idle") {
      this.state = "stopped";
      await this.closePool(SHUTDOWN_MARGIN_MS);
      return;
    }
    this.state = "stopping";
    const graceEnd = performance.now() + graceMs;
    const end = graceEnd + SHUTDOWN_MARGIN_MS;
    const left = () => Math.max(0, end - performance.now());
    clearTimeout(this.pollTimer);
    clearInterval(this.rateTimer);
    clearInterval(this.countsTimer);

    // No new scheduled jobs from this process (a tick it did not fire is fired by another, or
    // caught up by the next process to start).
    await within(this.scheduleLoop?.stop() ?? Promise.resolve(), left());

    // Stop claiming; hand back what was claimed but never started.
    await within(
      Promise.all([...this.schedulers.values()].map((s) => s.stop())),
      Math.max(0, graceEnd - performance.now()),
    );
    const listener = this.listener;
    this.listener = undefined;
    await within(
      Promise.all([listener?.close(), this.wakeup?.stop()]),
      Math.max(0, graceEnd - performance.now()),
    );
    const unstarted = [...this.buffers.values()].flatMap((b) => b.splice(0).map((x) => x.job));
    await within(this.handBack(unstarted, "the worker shut down before the job started"), left());

    // Running jobs get the grace period, then are stopped and handed back.
    await this.runner.waitIdle(graceEnd - performance.now());
    if (this.runner.size > 0) {
      this.logger.warn(
        { jobs: this.runner.size },
        "grace period over: aborting and returning running jobs",
      );
      const stopped = this.runner.abandonAll(new PgwakeError("SHUTDOWN", "worker shut down"));
      await within(this.handBack(stopped, "worker shut down before the job finished"), left());
    }
    // Jobs stopped by a fence go back now, also those whose handlers still run (shutting down,
    // this process no longer waits for them).
    const fenced = [...this.fencedJobs.splice(0), ...this.awaitingReturn.values()];
    this.awaitingReturn.clear();
    await within(this.handBack(fenced, "worker shut down"), left());

    const flushed = await within(this.writer.flush(), left());
    const unwritten = flushed ? 0 : this.writer.drop({ close: true });
    if (unwritten > 0) {
      this.logger.warn(
        { outcomes: unwritten },
        "could not write every outcome before the deadline: those jobs run again when the lease expires",
      );
    }
    await within(this.flushCounts(), left());
    await this.maintenance?.stop(left());
    // A heartbeat in flight on a silent network ends at its statement timeout: not waited for.
    await within(this.lease.stop(), left());
    await within(Promise.allSettled([...this.background]), left());
    const removed = await within(
      removeWorker(this.pool, this.sql, this.currentId, unwritten > 0).then(
        () => true,
        (error) => {
          this.logger.warn({ err: error }, "could not unregister worker");
          return false;
        },
      ),
      left(),
    );
    if (!removed) this.logger.warn("the worker row is left for the reaper");
    this.state = "stopped";
    await this.closePool(left());
    this.logger.info(this.stats, "worker stopped");
  }

  /** Ends the pool it owns, destroying connections that do not close by `timeoutMs`. */
  private async closePool(timeoutMs: number): Promise<void> {
    if (!this.ownsPool) return;
    const ended = this.pool.end().catch(() => {});
    if (!(await within(ended, timeoutMs))) {
      this.sockets.close();
      await within(ended, 1_000);
    }
    this.sockets.close();
  }

  private track<T>(promise: Promise<T>): void {
    this.background.add(promise);
    void promise.finally(() => this.background.delete(promise));
  }
}

function newWorkerId(): string {
  return `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
}

/** When a job finished, in the database's clock: its claim time plus how long it took here. */
function finishedAt(job: Job, ms: number): Date {
  return new Date((job.startedAt ?? job.runAt).getTime() + ms);
}

/** From due to claimed, in ms (both database times). */
function waitOf(job: Job): number {
  return Math.max(0, (job.startedAt?.getTime() ?? 0) - job.runAt.getTime());
}

/** Waits for `promise` at most `ms`; true when it settled in time. Never rejects. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, ms));
    }),
  ]);
  clearTimeout(timer);
  return settled;
}

/**
 * The queue limits the tasks declare, by queue. Tasks of one queue that declare different limits
 * are refused: which would win would depend on the order workers start.
 */
function taskQueueLimits(registry: TaskRegistry): Map<string, QueueLimits> {
  const byQueue = new Map<string, { task: string; limits: QueueLimits }>();
  for (const name of registry.names()) {
    const task = registry.get(name)!;
    if (!task.queueLimits) continue;
    checkQueueLimits(task.queueLimits);
    const queue = task.queue ?? DEFAULT_QUEUE;
    const seen = byQueue.get(queue);
    if (seen && !isDeepStrictEqual(seen.limits, task.queueLimits)) {
      throw new PgwakeError(
        "INVALID_OPTIONS",
        `tasks "${seen.task}" and "${name}" declare different queueLimits for queue "${queue}"`,
      );
    }
    byQueue.set(queue, { task: name, limits: task.queueLimits });
  }
  return new Map([...byQueue].map(([queue, { limits }]) => [queue, limits]));
}
