/** Worker options of pgwake a benchmark child may set (the rest keep their defaults). */
export interface PgwakeTuning {
  concurrency?: number;
  bufferMs?: number;
  flushDelayMs?: number;
  flushBatchSize?: number;
  claimCooldownMs?: number;
  poolSize?: number;
  pollIntervalMs?: number;
  maintenanceIntervalMs?: number;
  /** null keeps history forever. */
  retentionMs?: number | null;
}

/** What a benchmark worker process runs; see bench/worker-process.ts. */
export interface ChildConfig {
  system: "pgwake" | "graphile" | "pgboss";
  url: string;
  schema: string;
  queue: string;
  task: string;
  /**
   * pgwake: concurrency (unless `pgwake.concurrency` says otherwise); graphile-worker:
   * concurrentJobs; pg-boss: localConcurrency.
   */
  concurrency: number;
  /**
   * pgwake: these worker options, everything else at its default. With `pgwakeDefaults` the
   * child sets nothing but these (not even `concurrency`): the worker as users get it.
   */
  pgwake?: PgwakeTuning;
  pgwakeDefaults?: boolean;
  /** pgwake and pg-boss: LISTEN/NOTIFY wake-ups. */
  notify?: boolean;
  pollIntervalMs?: number;
  /** pg-boss: jobs fetched per poll. */
  batchSize?: number;
  /** graphile-worker: localQueue.size (0 or absent: off). */
  localQueueSize?: number;
  /** graphile-worker: maxPoolSize (default concurrency + 2). */
  maxPoolSize?: number;
  /** The no-op handler yields once (setImmediate) before returning, as a handler doing I/O would. */
  yieldInHandler?: boolean;
  /** Record handler start times of payloads `{ i }` (latency scenario). */
  recordStarts?: boolean;
}

export type ParentMessage =
  | { type: "prepare" }
  | { type: "start" }
  | { type: "stop" }
  | { type: "ping"; id: number }
  /** pgwake: counters so far without stopping (claims by kind, jobs claimed). */
  | { type: "counters" }
  | { type: "exit" };

export type ChildMessage =
  | { type: "ready" }
  | { type: "prepared" }
  | { type: "started" }
  | { type: "progress"; handled: number }
  | { type: "stopped"; handled: number; extra: Record<string, number>; starts: [number, number][] }
  | { type: "counters"; handled: number; extra: Record<string, number> }
  | { type: "pong"; id: number; now: number }
  | { type: "log"; text: string }
  | { type: "error"; text: string };
