/** What a benchmark worker process runs; see bench/worker-process.ts. */
export interface ChildConfig {
  system: "pgwake" | "graphile" | "pgboss";
  url: string;
  schema: string;
  queue: string;
  task: string;
  /** pgwake: concurrency; graphile-worker: concurrentJobs; pg-boss: localConcurrency. */
  concurrency: number;
  /** pgwake and pg-boss: LISTEN/NOTIFY wake-ups. */
  notify?: boolean;
  pollIntervalMs?: number;
  /** pg-boss: jobs fetched per poll. */
  batchSize?: number;
  /** graphile-worker: localQueue.size (0 or absent: off). */
  localQueueSize?: number;
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
  | { type: "exit" };

export type ChildMessage =
  | { type: "ready" }
  | { type: "prepared" }
  | { type: "started" }
  | { type: "progress"; handled: number }
  | { type: "stopped"; handled: number; extra: Record<string, number>; starts: [number, number][] }
  | { type: "pong"; id: number; now: number }
  | { type: "log"; text: string }
  | { type: "error"; text: string };
