import type pg from "pg";
import type { Progress } from "./progress.ts";
import type { Summary } from "./stats.ts";
import type { SystemName } from "./systems.ts";

export type Mode = "quick" | "default" | "full";

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
    latencyJobs: number;
  };
}

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
    peers: { drainJobs: 5_000, procs: [1], single: 1_000, bulk: 20_000, latencyJobs: 100 },
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
    peers: { drainJobs: 50_000, procs: [1, 2], single: 3_000, bulk: 50_000, latencyJobs: 1_000 },
  },
  full: {
    reps: 3,
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
    peers: { drainJobs: 50_000, procs: [1, 2], single: 5_000, bulk: 50_000, latencyJobs: 2_000 },
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
}
