import type pg from "pg";
import type { SchemaSql } from "../db/sql.ts";
import { maintainFlow } from "../jobs/flowControl.ts";
import {
  cleanWaiters,
  reapExpiredWorkers,
  releaseKeys,
  rotateHistory,
} from "../jobs/maintenance.ts";
import { compactMinuteCounts, pruneMinuteCounts } from "../jobs/stats.ts";
import type { Logger } from "../logger.ts";
import { pruneScheduleRuns } from "../schedules/sql/pruneRuns.ts";

/** One maintenance duty: its own timer, its own statements, its own failures. */
export interface MaintenanceService {
  name: string;
  /** Milliseconds to the next run, asked again after each run (jittered ±25% by the caller). */
  intervalMs: () => number;
  /** One run; what it returns is logged when it did something. */
  run: () => Promise<Record<string, unknown> | undefined>;
}

export interface MaintenanceOptions {
  pool: pg.Pool;
  sql: SchemaSql;
  logger: Logger;
  intervalMs: number;
  /** Finished jobs are kept this long; null keeps them. */
  retentionMs: number | null;
}

/** Per-minute counts are kept at least this long (dashboards chart the last hours). */
const MINUTES_KEPT_MS = 8 * 24 * 3_600_000;

/**
 * Maintenance of the fleet, run by every worker: each service on its own jittered timer, each
 * step one statement that takes a transaction-level try-lock when it must run once across the
 * fleet (src/jobs/maintenance.ts). A failing or slow service delays only itself.
 */
export class Maintenance {
  private readonly services: MaintenanceService[] = [];
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly running = new Set<Promise<unknown>>();
  private stopped = false;
  private readonly options: MaintenanceOptions;
  private keysAfter = new Date(0);
  private keysSweptAt = 0;
  private reapRuns = 0;
  private slotMs: number | null = null;

  constructor(options: MaintenanceOptions) {
    this.options = options;
    const { pool, sql } = options;
    const every = options.intervalMs;
    this.add({
      name: "reaper",
      intervalMs: () => every,
      run: async () => {
        // Running jobs of workers with no row at all (a safety net) cost a read of every running
        // job: every 12th run.
        const orphans = this.reapRuns++ % 12 === 11;
        const { expiredWorkers, reaped } = await reapExpiredWorkers(pool, sql, { orphans });
        return expiredWorkers || reaped ? { expiredWorkers, reaped } : undefined;
      },
    });
    this.add({
      name: "waiters",
      intervalMs: () => Math.max(every, 10_000),
      run: async () => {
        const removed = await cleanWaiters(pool, sql);
        return removed ? { removedTokens: removed } : undefined;
      },
    });
    this.add({
      name: "keys",
      intervalMs: () => every,
      run: async () => {
        if (options.retentionMs === null) return undefined;
        // Keys skipped because their job still lived are behind the cursor: start over hourly.
        if (Date.now() - this.keysSweptAt > 3_600_000) {
          this.keysAfter = new Date(0);
          this.keysSweptAt = Date.now();
        }
        const { released, upTo } = await releaseKeys(pool, sql, {
          retentionMs: options.retentionMs,
          after: this.keysAfter,
          limit: 10_000,
        });
        if (upTo) this.keysAfter = upTo;
        return released ? { releasedKeys: released } : undefined;
      },
    });
    this.add({
      name: "history",
      // Twice per slot, so a slot is dropped in time however short the retention.
      intervalMs: () => (this.slotMs ? Math.min(every, Math.max(100, this.slotMs / 2)) : every),
      run: async () => {
        const { emptied, slotMs } = await rotateHistory(pool, sql, options.retentionMs);
        this.slotMs = slotMs;
        return emptied ? { emptiedHistorySlots: emptied } : undefined;
      },
    });
    let flowRuns = 0;
    this.add({
      name: "flow",
      intervalMs: () => Math.max(every, 10_000),
      run: async () => {
        const forget = flowRuns++ % 360 === 0; // about hourly
        const { keyed, recounted, forgotten } = await maintainFlow(pool, sql, forget);
        return keyed || recounted || forgotten
          ? { keyedJobs: keyed, recountedSlots: recounted, forgottenKeys: forgotten }
          : undefined;
      },
    });
    this.add({
      name: "schedule-runs",
      intervalMs: () => Math.max(every, 60_000),
      run: async () => {
        if (options.retentionMs === null) return undefined;
        // Batches of 1,000 until the backlog is gone (each schedule keeps its newest runs).
        let pruned = 0;
        for (let batch = 0; batch < 100; batch++) {
          const n = await pruneScheduleRuns(pool, sql, {
            olderThanMs: options.retentionMs,
            limit: 1_000,
          });
          pruned += n;
          if (n < 1_000) break;
        }
        return pruned ? { prunedScheduleRuns: pruned } : undefined;
      },
    });
    this.add({
      name: "minutes",
      intervalMs: () => Math.max(every, 600_000),
      run: async () => {
        const pruned = await pruneMinuteCounts(pool, sql, MINUTES_KEPT_MS);
        let folded = 0;
        for (let batch = 0; batch < 20; batch++) {
          const n = await compactMinuteCounts(pool, sql, 20_000);
          folded += n;
          if (n < 20_000) break;
        }
        return pruned || folded ? { prunedMinutes: pruned, foldedMinutes: folded } : undefined;
      },
    });
  }

  /** Adds a service (e.g. schedules); starts it if maintenance runs. */
  add(service: MaintenanceService): void {
    this.services.push(service);
    if (this.timers.size > 0 || this.running.size > 0) this.schedule(service, true);
  }

  start(): void {
    for (const service of this.services) this.schedule(service, true);
  }

  /** Runs every service once now, in order; resolves with what each did (or its error). */
  async runOnce(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const service of this.services) {
      try {
        out[service.name] = (await service.run()) ?? {};
      } catch (error) {
        out[service.name] = { error: (error as Error).message };
      }
    }
    return out;
  }

  /** Stops the timers and waits (at most `timeoutMs`) for runs under way. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.running]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  private schedule(service: MaintenanceService, first = false): void {
    if (this.stopped) return;
    const jitter = 0.75 + Math.random() * 0.5;
    // The first run of each service is spread over its interval: processes started together do
    // not all reap at once.
    const delay = service.intervalMs() * (first ? Math.random() : jitter);
    this.timers.set(
      service.name,
      setTimeout(() => {
        this.timers.delete(service.name);
        const run = service
          .run()
          .then((result) => {
            if (result)
              this.options.logger.info({ service: service.name, ...result }, "maintenance");
          })
          .catch((error) =>
            this.options.logger.warn(
              { err: error, service: service.name },
              "maintenance step failed",
            ),
          )
          .finally(() => {
            this.running.delete(run);
            this.schedule(service);
          });
        this.running.add(run);
      }, delay),
    );
  }
}
