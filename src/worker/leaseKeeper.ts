import type pg from "pg";
import type { SchemaSql } from "../db/sql.ts";
import { heartbeat, registerWorker, type WorkerInfo } from "../jobs/heartbeat.ts";
import type { Logger } from "../logger.ts";

/**
 * The worker's lease, one row for every job it holds:
 * - `starting`: not registered yet.
 * - `live`: renewed within the lease; claims and outcomes go on.
 * - `fenced`: not renewed for lease − margin. The worker has stopped its jobs (their signals
 *   fired) and stopped claiming before the lease could run out, so no other worker runs one of
 *   its jobs while its own handler still runs (invariant 8). Heartbeats go on; the first that
 *   succeeds lifts the fence (or starts the worker over under a new id if it was reaped).
 * - `stopped`.
 */
export type LeaseState = "starting" | "live" | "fenced" | "stopped";

export interface LeaseKeeperOptions {
  pool: pg.Pool;
  sql: SchemaSql;
  leaseMs: number;
  heartbeatMs: number;
  logger: Logger;
  /** The worker as the fleet sees it (its current id). */
  info: () => WorkerInfo & { runningByQueue: Record<string, number> };
  /** Jobs the worker holds (running, buffered, or with an outcome not yet written). */
  held: () => number[];
  /** Jobs it believed it held and does not (cancelled, or reaped). */
  onLost: (ids: number[]) => void;
  /** Lease − margin passed without a renewal. */
  onFence: () => void;
  /** A renewal succeeded after a fence: `reaped` when the worker must start over. */
  onRenewed: (reaped: boolean) => Promise<void> | void;
  /** Every heartbeat's result (for metrics). */
  onHeartbeat?: (ok: boolean) => void;
}

/**
 * Heartbeats and fencing. Renewal time is taken when a heartbeat is *sent* (the database's lease
 * runs from when it executes, which is later), so the fence always comes before the lease ends.
 */
export class LeaseKeeper {
  private state: LeaseState = "starting";
  private renewedAt = 0;
  private beating: Promise<void> | undefined;
  private interval: NodeJS.Timeout | undefined;
  private fenceTimer: NodeJS.Timeout | undefined;
  private readonly options: LeaseKeeperOptions;

  constructor(options: LeaseKeeperOptions) {
    this.options = options;
  }

  get leaseState(): LeaseState {
    return this.state;
  }

  /** How long before the lease ends the worker fences itself. */
  get marginMs(): number {
    return Math.min(5_000, Math.round(this.options.leaseMs / 5));
  }

  /** Milliseconds since the last renewal was sent (Infinity before the first). */
  get sinceRenewalMs(): number {
    return this.renewedAt === 0 ? Number.POSITIVE_INFINITY : performance.now() - this.renewedAt;
  }

  /** Registers the worker (throws when the database cannot be reached) and starts heartbeats. */
  async start(): Promise<void> {
    const sent = performance.now();
    await registerWorker(
      this.options.pool,
      this.options.sql,
      this.options.info(),
      this.options.leaseMs,
    );
    this.renewed(sent);
    this.state = "live";
    this.interval = setInterval(() => this.beat(), this.options.heartbeatMs);
  }

  /** Renews the lease now (also when a cancellation was announced). */
  beat(): Promise<void> {
    if (this.state === "stopped" || this.state === "starting") return Promise.resolve();
    // One heartbeat at a time: a slow one must not pile others up behind it.
    this.beating ??= this.renew().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  /** Registers again under the worker's (new) id: a reaped worker's fresh start. */
  async reregister(): Promise<void> {
    const sent = performance.now();
    await registerWorker(
      this.options.pool,
      this.options.sql,
      this.options.info(),
      this.options.leaseMs,
    );
    this.renewed(sent);
    this.state = "live";
  }

  async stop(): Promise<void> {
    this.state = "stopped";
    clearInterval(this.interval);
    clearTimeout(this.fenceTimer);
    await this.beating;
  }

  private async renew(): Promise<void> {
    const { pool, sql, leaseMs, logger } = this.options;
    const info = this.options.info();
    const held = this.options.held();
    const sent = performance.now();
    let result: Awaited<ReturnType<typeof heartbeat>>;
    try {
      result = await heartbeat(pool, sql, info, held, leaseMs);
    } catch (error) {
      this.options.onHeartbeat?.(false);
      logger.warn(
        { err: error, sinceRenewalMs: Math.round(this.sinceRenewalMs), leaseMs },
        "heartbeat failed",
      );
      return;
    }
    this.options.onHeartbeat?.(true);
    if (this.state === "stopped") return;
    if (!result.alive) {
      // Reaped: every job we held was taken back. Stop them, and start over under a new id.
      logger.error(
        { workerId: info.id },
        "this worker was reaped (its lease ran out): starting over",
      );
      if (this.state !== "fenced") this.fence();
      await this.options.onRenewed(true);
      return;
    }
    this.renewed(sent);
    if (result.lost.length > 0) this.options.onLost(result.lost);
    if (this.state === "fenced") {
      logger.warn("lease renewed: claiming again");
      this.state = "live";
      await this.options.onRenewed(false);
    }
  }

  private renewed(sentAt: number): void {
    this.renewedAt = Math.max(this.renewedAt, sentAt);
    clearTimeout(this.fenceTimer);
    const fenceIn = this.options.leaseMs - this.marginMs - (performance.now() - this.renewedAt);
    this.fenceTimer = setTimeout(() => this.fence(), Math.max(0, fenceIn));
  }

  private fence(): void {
    if (this.state !== "live") return;
    this.state = "fenced";
    this.options.logger.error(
      { sinceRenewalMs: Math.round(this.sinceRenewalMs), leaseMs: this.options.leaseMs },
      "lease not renewed in time: stopping this worker's jobs and claims until the database answers",
    );
    this.options.onFence();
  }
}
