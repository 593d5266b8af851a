import type pg from "pg";
import type { Progress } from "./progress.ts";
import type { Summary } from "./stats.ts";
import type { SystemName } from "./systems.ts";

export type Mode = "quick" | "default" | "full";

/** A graphile-worker configuration tried in `peers` (its best one is compared). */
export interface GraphileConfig {
  concurrency: number;
  localQueueSize: number;
  maxPoolSize?: number;
}

/** Sizes of every scenario for one mode. */
export interface Settings {
  reps: number;
  drain: {
    jobs: number;
    procs: number[];
    concurrency: number;
    sweep: number[];
    sweepJobs: number;
    chunk: number;
  };
  enqueue: { single: number; inFlight: number; bulk: number; bulkChunk: number; sql: number };
  latency: { jobs: number; intervalMs: number; missedAfterMs: number };
  wakeup: { seconds: number; submitters: number[]; backlog: number };
  http: { seconds: number; rates: number[]; connections: number };
  peers: {
    drainJobs: number;
    procs: number[];
    single: number;
    bulk: number;
    /** Bulk enqueue shapes: jobs per call (the last one is one call of `bulk`). */
    bulkChunks: number[];
    latencyJobs: number;
    /** graphile-worker configurations tried on one process; the best is compared. */
    graphileCandidates: GraphileConfig[];
    calibrationJobs: number;
    calibrationRuns: number;
    /** pg-boss too (it doubles the time of the drain rounds). */
    pgboss: boolean;
  };
  /** WAL per drained job. */
  wal: { jobs: number };
  /** Drain while a transaction stays open in another database. */
  xmin: { jobs: number };
  /** Sustained submissions with a short retention: does finished history stay bounded? */
  history: { rate: number; seconds: number; retentionMs: number; sampleEveryMs: number };
  /** Stats endpoints and a single job's start delay over a large history. */
  scale: {
    historyRows: number;
    queues: number;
    seconds: number;
    jobIntervalMs: number;
    scrapeIntervalMs: number;
  };
  /** Idle worker processes: what they cost submitters, and how many one job wakes. */
  fleet: {
    workers: number;
    seconds: number;
    inFlight: number;
    wakeJobs: number;
    wakeIntervalMs: number;
  };
  /** Where bulk enqueue time goes. */
  bulk: { jobs: number; chunks: number[] };
  /** Cron schedules firing together (bench/scenarios/schedules.ts). */
  schedules: { schedules: number; ticks: number; services: number };
}

const GRAPHILE_DOCS: GraphileConfig = { concurrency: 24, localQueueSize: 500, maxPoolSize: 25 };

export const SETTINGS: Record<Mode, Settings> = {
  quick: {
    reps: 3,
    drain: {
      jobs: 10_000,
      procs: [1, 2],
      concurrency: 100,
      sweep: [16, 200],
      sweepJobs: 2_000,
      chunk: 10_000,
    },
    enqueue: { single: 1_000, inFlight: 16, bulk: 50_000, bulkChunk: 10_000, sql: 1_000 },
    latency: { jobs: 100, intervalMs: 10, missedAfterMs: 100 },
    wakeup: { seconds: 0.5, submitters: [8, 16], backlog: 20_000 },
    http: { seconds: 1, rates: [2_500, 5_000], connections: 64 },
    peers: {
      drainJobs: 5_000,
      procs: [1, 2],
      single: 1_000,
      bulk: 10_000,
      bulkChunks: [1_000, 10_000],
      latencyJobs: 100,
      graphileCandidates: [GRAPHILE_DOCS, { concurrency: 64, localQueueSize: 1_000 }],
      calibrationJobs: 5_000,
      calibrationRuns: 1,
      pgboss: false,
    },
    wal: { jobs: 5_000 },
    xmin: { jobs: 5_000 },
    history: { rate: 2_000, seconds: 20, retentionMs: 10_000, sampleEveryMs: 1_000 },
    scale: {
      historyRows: 200_000,
      queues: 10,
      seconds: 8,
      jobIntervalMs: 50,
      scrapeIntervalMs: 100,
    },
    fleet: { workers: 20, seconds: 1, inFlight: 16, wakeJobs: 20, wakeIntervalMs: 150 },
    bulk: { jobs: 10_000, chunks: [1_000, 10_000] },
    schedules: { schedules: 1_000, ticks: 1, services: 2 },
  },
  default: {
    reps: 3,
    drain: {
      jobs: 50_000,
      procs: [1, 2, 4],
      concurrency: 100,
      sweep: [16, 50, 200],
      sweepJobs: 20_000,
      chunk: 10_000,
    },
    enqueue: { single: 5_000, inFlight: 16, bulk: 50_000, bulkChunk: 10_000, sql: 5_000 },
    latency: { jobs: 2_000, intervalMs: 10, missedAfterMs: 100 },
    wakeup: { seconds: 3, submitters: [8, 16], backlog: 100_000 },
    http: { seconds: 4, rates: [1_000, 2_500, 5_000], connections: 64 },
    peers: {
      drainJobs: 50_000,
      procs: [1, 2],
      single: 3_000,
      bulk: 50_000,
      bulkChunks: [1_000, 50_000],
      latencyJobs: 1_000,
      graphileCandidates: [
        GRAPHILE_DOCS,
        { concurrency: 32, localQueueSize: 500 },
        { concurrency: 64, localQueueSize: 1_000 },
        { concurrency: 100, localQueueSize: 1_000 },
      ],
      calibrationJobs: 20_000,
      calibrationRuns: 2,
      pgboss: true,
    },
    wal: { jobs: 50_000 },
    xmin: { jobs: 50_000 },
    history: { rate: 2_000, seconds: 120, retentionMs: 10_000, sampleEveryMs: 5_000 },
    scale: {
      historyRows: 5_000_000,
      queues: 10,
      seconds: 30,
      jobIntervalMs: 50,
      scrapeIntervalMs: 100,
    },
    fleet: { workers: 100, seconds: 3, inFlight: 16, wakeJobs: 50, wakeIntervalMs: 200 },
    bulk: { jobs: 50_000, chunks: [1_000, 50_000] },
    schedules: { schedules: 10_000, ticks: 3, services: 2 },
  },
  full: {
    reps: 5,
    drain: {
      jobs: 200_000,
      procs: [1, 2, 4],
      concurrency: 100,
      sweep: [16, 200],
      sweepJobs: 20_000,
      chunk: 10_000,
    },
    enqueue: { single: 10_000, inFlight: 16, bulk: 50_000, bulkChunk: 10_000, sql: 10_000 },
    latency: { jobs: 2_000, intervalMs: 10, missedAfterMs: 100 },
    wakeup: { seconds: 4, submitters: [8, 16], backlog: 150_000 },
    http: { seconds: 5, rates: [1_000, 2_500, 5_000], connections: 64 },
    peers: {
      drainJobs: 50_000,
      procs: [1, 2],
      single: 5_000,
      bulk: 50_000,
      bulkChunks: [1_000, 50_000],
      latencyJobs: 2_000,
      graphileCandidates: [
        GRAPHILE_DOCS,
        { concurrency: 32, localQueueSize: 500 },
        { concurrency: 64, localQueueSize: 1_000 },
        { concurrency: 100, localQueueSize: 1_000 },
      ],
      calibrationJobs: 50_000,
      calibrationRuns: 2,
      pgboss: true,
    },
    wal: { jobs: 50_000 },
    xmin: { jobs: 50_000 },
    history: { rate: 2_000, seconds: 120, retentionMs: 10_000, sampleEveryMs: 5_000 },
    scale: {
      historyRows: 5_000_000,
      queues: 10,
      seconds: 60,
      jobIntervalMs: 50,
      scrapeIntervalMs: 100,
    },
    fleet: { workers: 100, seconds: 4, inFlight: 16, wakeJobs: 100, wakeIntervalMs: 200 },
    bulk: { jobs: 50_000, chunks: [1_000, 50_000] },
    schedules: { schedules: 10_000, ticks: 3, services: 2 },
  },
};

/** One measured figure: the median of its repetitions with their min and max. */
export interface Result {
  scenario: string;
  system: SystemName;
  /** What was run, e.g. "50,000 jobs, 2 processes, concurrency 100". */
  case: string;
  metric: string;
  unit: string;
  better: "higher" | "lower";
  summary: Summary;
  /** Compared with another row: the key that ties pgwake's row to its peers' rows. */
  compareKey?: string;
  /** Which pgwake configuration, when a scenario compares several (e.g. "defaults", "tuned"). */
  variant?: string;
}

/** A target of an issue checked against this run's figures. */
export interface Verdict {
  /** e.g. "#11" */
  issue: string;
  target: string;
  measured: string;
  /** null: not decidable from this run (e.g. the scenario was skipped or failed). */
  met: boolean | null;
}

export interface BenchContext {
  url: string;
  mode: Mode;
  settings: Settings;
  admin: pg.Pool;
  progress: Progress;
  results: Result[];
  /** Findings printed after the table and stored in the JSON (e.g. EXPLAIN output, skips). */
  notes: { scenario: string; text: string }[];
  /** Whether pg_stat_statements can be read on this server. */
  statStatements: boolean;
  /** Targets of the issues, with what this run measured. */
  verdicts: Verdict[];
}
