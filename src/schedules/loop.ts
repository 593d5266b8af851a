import type { SchemaSql } from "../db/sql.ts";
import { isTransientError } from "../db/transient.ts";
import type { Queryable } from "../db/types.ts";
import { type Logger, silentLogger } from "../logger.ts";
import {
  type RunDueSchedulesOptions,
  type RunDueSchedulesResult,
  runDueSchedules,
} from "./service.ts";

export interface ScheduleLoopOptions extends RunDueSchedulesOptions {
  logger?: Logger;
  /** Called after every pass (metrics). */
  onPass?: (result: RunDueSchedulesResult) => void;
  /** Wait after a failed pass before the next one (default 1000 ms). */
  retryDelayMs?: number;
}

/**
 * What the loop is doing: `idle` (not started), `running` a pass, `waiting` on its timer,
 * `stopping` (a pass may still be finishing), `stopped`.
 */
export type ScheduleLoopState = "idle" | "running" | "waiting" | "stopping" | "stopped";

/**
 * The schedule service on its own loop: a pass, then a timer set to the pass's `delayMs`.
 * The worker's maintenance runner may call `runDueSchedules` itself instead; this is the same
 * thing for processes that only fire schedules (tests, the bench) and a reference for wiring.
 * A failed pass is logged and retried after `retryDelayMs`; nothing it throws escapes.
 */
export class ScheduleLoop {
  private stateValue: ScheduleLoopState = "idle";
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private readonly db: Queryable;
  private readonly sql: SchemaSql;
  private readonly options: ScheduleLoopOptions;
  private readonly logger: Logger;

  constructor(db: Queryable, sql: SchemaSql, options: ScheduleLoopOptions = {}) {
    this.db = db;
    this.sql = sql;
    this.options = options;
    this.logger = options.logger ?? silentLogger;
  }

  get state(): ScheduleLoopState {
    return this.stateValue;
  }

  /** Starts passes; the first one at once. */
  start(): void {
    if (this.stateValue !== "idle")
      throw new Error(`schedule loop cannot start: it is ${this.stateValue}`);
    this.runPass();
  }

  /** Runs a pass now instead of at the timer (e.g. after creating a schedule). */
  wake(): void {
    if (this.stateValue !== "waiting") return;
    clearTimeout(this.timer);
    this.runPass();
  }

  /** Stops the timer and waits for a pass under way to finish. */
  async stop(): Promise<void> {
    if (this.stateValue === "stopped" || this.stateValue === "idle") {
      this.stateValue = "stopped";
      return;
    }
    this.stateValue = "stopping";
    clearTimeout(this.timer);
    await this.pass;
    this.stateValue = "stopped";
  }

  private runPass(): void {
    this.stateValue = "running";
    this.pass = (async () => {
      let delayMs = this.options.retryDelayMs ?? 1_000;
      try {
        const result = await runDueSchedules(this.db, this.sql, this.options);
        delayMs = result.delayMs;
        this.options.onPass?.(result);
        if (result.invalid.length > 0) {
          this.logger.warn(
            { invalid: result.invalid },
            "schedules parked: cannot evaluate their expression or zone",
          );
        }
      } catch (error) {
        this.logger[isTransientError(error) ? "warn" : "error"](
          { err: error },
          "schedule pass failed; retrying",
        );
      }
      if (this.stateValue !== "running") return;
      this.stateValue = "waiting";
      this.timer = setTimeout(() => this.runPass(), delayMs);
    })();
  }
}
