import type { Logger } from "../logger.ts";

/** Thrown by `checkpoint()` when a signal arrived while the command was still starting. */
export class StopRequested extends Error {
  constructor() {
    super("stop requested");
    this.name = "StopRequested";
  }
}

/**
 * A command's resources and how to let them go. Whatever starts registers its cleanup; a signal
 * (or the end of a one-shot command) runs them newest first, so the HTTP server closes before
 * the worker drains, the worker before its pool, and the embedded Postgres last. A second signal
 * gives up waiting and exits with 1.
 */
export class Lifecycle {
  private readonly cleanups: { name: string; run: () => Promise<void> }[] = [];
  private signal: NodeJS.Signals | undefined;
  private resolveStop!: (signal: NodeJS.Signals) => void;
  /** Resolves with the first SIGTERM, SIGINT or SIGHUP. */
  readonly stopRequested: Promise<NodeJS.Signals>;
  private readonly handler = (signal: NodeJS.Signals) => this.onSignal(signal);
  logger: Logger;

  constructor(logger: Logger) {
    this.logger = logger;
    this.stopRequested = new Promise((resolve) => {
      this.resolveStop = resolve;
    });
  }

  /**
   * Takes over SIGTERM, SIGINT and SIGHUP (a closed terminal) for a graceful stop; left to
   * Node's default, they would end the process at once and orphan an embedded Postgres.
   */
  installSignalHandlers(): void {
    for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, this.handler);
  }

  get stopping(): boolean {
    return this.signal !== undefined;
  }

  /** Registers how to release something just started. */
  onCleanup(name: string, run: () => Promise<void>): void {
    this.cleanups.push({ name, run });
  }

  /** Aborts a start in progress once a signal arrived: what started so far is cleaned up. */
  checkpoint(): void {
    if (this.stopping) throw new StopRequested();
  }

  /** Runs every cleanup, newest first; a failing one is logged and the rest still run. */
  async cleanup(): Promise<boolean> {
    let ok = true;
    for (let entry = this.cleanups.pop(); entry; entry = this.cleanups.pop()) {
      try {
        await entry.run();
      } catch (error) {
        ok = false;
        this.logger.error({ err: error }, `could not stop ${entry.name}`);
      }
    }
    return ok;
  }

  private onSignal(signal: NodeJS.Signals): void {
    if (this.signal) {
      this.logger.warn({ signal }, "second signal: exiting without waiting");
      process.exit(1);
    }
    this.signal = signal;
    this.logger.info({ signal }, "shutting down gracefully (send the signal again to force)");
    this.resolveStop(signal);
  }
}
