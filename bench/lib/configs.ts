import { WORKER_DEFAULTS } from "../../src/worker/options.ts";
import type { GraphileConfig } from "./context.ts";
import type { ChildConfig, PgwakeTuning } from "./protocol.ts";
import type { SystemAdapter, SystemName } from "./systems.ts";

/** One worker configuration of one system, as the scenarios compare them. */
export interface WorkerVariant {
  system: SystemName;
  /** Short name in tables and ratios ("defaults", "tuned", "best of 3", …). */
  variant: string;
  /** What is set, for the case column. */
  label: string;
  child: Partial<ChildConfig>;
}

/** pgwake as users get it: the child sets no worker option at all. */
export const PGWAKE_DEFAULTS: WorkerVariant = {
  system: "pgwake",
  variant: "defaults",
  label: `defaults: concurrency ${WORKER_DEFAULTS.concurrency}, bufferMs ${WORKER_DEFAULTS.bufferMs}, flushDelayMs ${WORKER_DEFAULTS.flushDelayMs}, poolSize ${WORKER_DEFAULTS.poolSize}`,
  child: { pgwakeDefaults: true },
};

/**
 * pgwake tuned for draining a backlog of no-op jobs: more handler slots, so the buffer target
 * (slots + recent rate × bufferMs) makes claims and completion batches larger, and a pool with
 * room for a claim, a completion batch and a heartbeat at once. Chosen by trying a few settings
 * on this machine (bench/README.md, "peers").
 */
export const PGWAKE_TUNING: PgwakeTuning = { concurrency: 100, bufferMs: 200, poolSize: 8 };

export const PGWAKE_TUNED: WorkerVariant = {
  system: "pgwake",
  variant: "tuned",
  label: `tuned: ${Object.entries(PGWAKE_TUNING)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ")}`,
  child: { pgwakeDefaults: true, pgwake: PGWAKE_TUNING },
};

/** graphile-worker's documented performance configuration (its "Performance" page). */
export const GRAPHILE_DOCS: GraphileConfig = {
  concurrency: 24,
  localQueueSize: 500,
  maxPoolSize: 25,
};

/** A graphile-worker configuration: concurrency, local queue, batched completions. */
export function graphileVariant(config: GraphileConfig, variant = "best"): WorkerVariant {
  return {
    system: "graphile",
    variant,
    label: `concurrentJobs ${config.concurrency}, localQueue ${config.localQueueSize}, maxPoolSize ${config.maxPoolSize ?? config.concurrency + 2}, completeJobBatchDelay 0`,
    child: {
      concurrency: config.concurrency,
      localQueueSize: config.localQueueSize,
      ...(config.maxPoolSize ? { maxPoolSize: config.maxPoolSize } : {}),
    },
  };
}

/** pg-boss draining: several workers per process, each fetching a batch. */
export const PGBOSS_DRAIN: WorkerVariant = {
  system: "pgboss",
  variant: "batch",
  label: "4 workers × batchSize 100, burstWhenBatchFull",
  child: { concurrency: 4, batchSize: 100 },
};

/** The child process config of a variant on an adapter's schema (no-op handler that yields). */
export function variantChildConfig(
  adapter: SystemAdapter,
  url: string,
  variant: WorkerVariant,
): ChildConfig {
  return {
    system: adapter.name,
    url,
    schema: adapter.schema,
    queue: adapter.queue,
    task: adapter.task,
    concurrency: 16,
    yieldInHandler: true,
    ...variant.child,
  };
}
