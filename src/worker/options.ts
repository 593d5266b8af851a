import type pg from "pg";
import type { Registry } from "prom-client";
import { PgwakeError } from "../errors.ts";
import type { NewJob } from "../jobs/enqueue.ts";
import type { Logger } from "../logger.ts";
import type { ScheduleSpec } from "../schedules/definition.ts";
import { SETTING_DEFAULTS } from "../settings.ts";
import type { AnyTaskDefinition, TaskRegistry } from "../tasks.ts";

/** A queue a worker serves, with at most `slots` of its handler slots (default: any). */
export interface QueueSlots {
  name: string;
  slots?: number;
}

/** How a worker process runs; every field but `tasks` and a database has a default. */
export interface WorkerOptions {
  /** Used for the pool (unless `pool` is given) and for the LISTEN connection. */
  connectionString: string;
  /**
   * A direct URL for the LISTEN connection when `connectionString` goes through a
   * transaction-mode pooler (PgBouncer), where LISTEN cannot work.
   */
  listenConnectionString?: string;
  /**
   * A pool to claim and complete on; by default the worker makes and owns one. The worker's own
   * pool fixes its plans (generic, index paths, no JIT: see `createPool`); a pool given here
   * keeps its sessions' settings.
   */
  pool?: pg.Pool;
  schema?: string;
  tasks: TaskRegistry | readonly AnyTaskDefinition[];
  /**
   * Queues to serve: names, or `{ name, slots }` to cap a queue's share of the slots. Absent or
   * empty: every queue, including queues that appear later.
   */
  queues?: readonly (string | QueueSlots)[];
  /** Handlers run at once by this process. */
  concurrency?: number;
  /** LISTEN/NOTIFY wake-ups; false polls only. */
  notify?: boolean;
  /** The fallback poll (jittered ±25%). */
  pollIntervalMs?: number;
  /** How long a worker's lease lasts without a heartbeat. */
  leaseMs?: number;
  heartbeatMs?: number;
  /** A handler's time limit unless the job or the task sets one. */
  defaultTimeoutMs?: number;
  /**
   * After a claim that found some jobs but fewer than it had room for, claim again after this
   * long instead of asking to be woken: under steady load the next jobs are moments away, and
   * one claim then takes them together. 0 turns it off.
   */
  claimCooldownMs?: number;
  /**
   * Jobs claimed ahead of free slots, in time: the worker keeps about this many milliseconds of
   * work (at its recent completion rate) claimed and waiting, so fast jobs are claimed in large
   * batches and slow ones one by one. Buffered jobs are held under the worker's lease and handed
   * back untouched at shutdown. 0 claims only for free slots.
   */
  bufferMs?: number;
  /** Completions and failures wait this long to be written together. */
  flushDelayMs?: number;
  flushBatchSize?: number;
  /** Maintenance (reaper, retention, …) interval, jittered ±25%; 0 turns it off. */
  maintenanceIntervalMs?: number;
  /** Finished jobs are dropped this long after they finished; null keeps them. */
  retentionMs?: number | null;
  /** How often the LISTEN connection is checked, and how long the check may take. */
  livenessMs?: number;
  /**
   * The connection fault model: a statement with no answer after this long is abandoned and its
   * connection replaced; idle connections are probed by TCP keepalive (see `createPool`).
   */
  networkTimeoutMs?: number;
  /**
   * Most connections in the worker's own pool, opened as needed (besides the LISTEN connection):
   * a worker holds at most 1 + poolSize connections. 1 still works: claims, outcome writes and
   * heartbeats then take turns.
   */
  poolSize?: number;
  /** Behind a transaction-mode pooler: no startup parameters, no named prepared statements. */
  pooler?: boolean;
  workerId?: string;
  logger?: Logger;
  /** Where the worker's Prometheus metrics go (default: a registry of its own, `worker.metrics`). */
  metricsRegistry?: Registry;
  /**
   * Fire cron schedules (docs/schedules.md) from this process. Every worker does by default and
   * they share the work: each tick makes one job whichever process decides it. false leaves the
   * schedules to other processes.
   */
  schedules?: boolean;
  /**
   * The deployment group owning the schedules declared in code (tasks' `schedules`,
   * `declaredSchedules`): a worker deletes its group's code schedules of the tasks it runs that
   * are no longer declared. Deployments sharing a schema with different code use different owners.
   */
  scheduleOwner?: string;
  /** Schedules declared in code besides the tasks' own (`Pgwake.schedule`). */
  declaredSchedules?: readonly ScheduleSpec[];
  /** Checks a declared schedule's jobs as an enqueue would (`Pgwake.prepare`). */
  prepareJob?: (job: NewJob) => NewJob;
}

/**
 * Defaults of every worker option. Those that are also settings of the `pgwake` command come from
 * its one table of settings (src/settings.ts), so the library and the CLI cannot disagree.
 */
export const WORKER_DEFAULTS = {
  schema: SETTING_DEFAULTS.schema,
  concurrency: SETTING_DEFAULTS.concurrency,
  notify: SETTING_DEFAULTS.notify,
  pollIntervalMs: SETTING_DEFAULTS.pollIntervalMs,
  leaseMs: SETTING_DEFAULTS.leaseMs,
  heartbeatMs: SETTING_DEFAULTS.heartbeatMs,
  defaultTimeoutMs: SETTING_DEFAULTS.jobTimeoutMs,
  claimCooldownMs: SETTING_DEFAULTS.claimCooldownMs,
  bufferMs: SETTING_DEFAULTS.bufferMs,
  flushDelayMs: 2,
  flushBatchSize: 1_000,
  maintenanceIntervalMs: SETTING_DEFAULTS.maintenanceIntervalMs,
  retentionMs: SETTING_DEFAULTS.retentionMs as number | null,
  livenessMs: 5_000,
  networkTimeoutMs: SETTING_DEFAULTS.networkTimeoutMs,
  poolSize: SETTING_DEFAULTS.poolSize,
  pooler: SETTING_DEFAULTS.pooler,
  schedules: SETTING_DEFAULTS.schedules,
  scheduleOwner: SETTING_DEFAULTS.scheduleOwner,
};

export type ResolvedWorkerOptions = typeof WORKER_DEFAULTS & {
  connectionString: string;
  listenConnectionString: string;
  /** null: every queue. */
  queues: QueueSlots[] | null;
};

/** Fills in defaults and checks what cannot work. */
export function resolveWorkerOptions(options: WorkerOptions): ResolvedWorkerOptions {
  const pick = <K extends keyof typeof WORKER_DEFAULTS>(key: K): (typeof WORKER_DEFAULTS)[K] =>
    (options[key as keyof WorkerOptions] === undefined
      ? WORKER_DEFAULTS[key]
      : options[key as keyof WorkerOptions]) as (typeof WORKER_DEFAULTS)[K];
  const queues = options.queues?.length
    ? dedupe(options.queues.map((q) => (typeof q === "string" ? { name: q } : q)))
    : null;
  const resolved: ResolvedWorkerOptions = {
    connectionString: options.connectionString,
    listenConnectionString: options.listenConnectionString ?? options.connectionString,
    queues,
    schema: pick("schema"),
    concurrency: pick("concurrency"),
    notify: pick("notify"),
    pollIntervalMs: pick("pollIntervalMs"),
    leaseMs: pick("leaseMs"),
    heartbeatMs: pick("heartbeatMs"),
    defaultTimeoutMs: pick("defaultTimeoutMs"),
    claimCooldownMs: pick("claimCooldownMs"),
    bufferMs: pick("bufferMs"),
    flushDelayMs: pick("flushDelayMs"),
    flushBatchSize: pick("flushBatchSize"),
    maintenanceIntervalMs: pick("maintenanceIntervalMs"),
    retentionMs:
      options.retentionMs === undefined ? WORKER_DEFAULTS.retentionMs : options.retentionMs,
    livenessMs: pick("livenessMs"),
    networkTimeoutMs: pick("networkTimeoutMs"),
    poolSize: pick("poolSize"),
    pooler: pick("pooler"),
    schedules: pick("schedules"),
    scheduleOwner: pick("scheduleOwner"),
  };
  if (!(resolved.concurrency >= 1))
    throw new PgwakeError("INVALID_OPTIONS", "concurrency must be at least 1");
  if (resolved.heartbeatMs >= resolved.leaseMs) {
    throw new PgwakeError("INVALID_OPTIONS", "heartbeatMs must be shorter than leaseMs");
  }
  if (!(resolved.poolSize >= 1))
    throw new PgwakeError("INVALID_OPTIONS", "poolSize must be at least 1");
  for (const q of queues ?? []) {
    if (q.slots !== undefined && !(q.slots >= 1)) {
      throw new PgwakeError("INVALID_OPTIONS", `queue ${q.name}: slots must be at least 1`);
    }
  }
  return resolved;
}

function dedupe(queues: QueueSlots[]): QueueSlots[] {
  const byName = new Map<string, QueueSlots>();
  for (const q of queues) byName.set(q.name, q);
  return [...byName.values()];
}
