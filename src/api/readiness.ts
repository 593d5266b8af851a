import type { SchemaState } from "../db/migrate.ts";
import { notReady } from "./errors.ts";

/** A failed check is reused this long, so a flood of requests before migration costs one query. */
const RECHECK_MS = 1_000;

/**
 * Whether the database schema is the one this code needs. Routes that touch jobs ask before they
 * run: before migration they answer 503 NOT_READY with what to do, instead of whatever error a
 * missing table would give. Once the schema has been seen current it is not asked again
 * (migrations only move forward); `/ready` still reads it on every call.
 */
export class SchemaReadiness {
  private current = false;
  private pending: Promise<SchemaState> | undefined;
  private lastFailed: { state: SchemaState; at: number } | undefined;
  private readonly read: () => Promise<SchemaState>;

  constructor(read: () => Promise<SchemaState>) {
    this.read = read;
  }

  /** Reads the schema's version now (concurrent callers share one read). */
  async state(): Promise<SchemaState> {
    this.pending ??= this.read().finally(() => {
      this.pending = undefined;
    });
    const state = await this.pending;
    this.current = state.current === state.latest;
    this.lastFailed = this.current ? undefined : { state, at: Date.now() };
    return state;
  }

  /** Resolves when the schema is current; else throws 503 NOT_READY (or the database's error). */
  async require(): Promise<void> {
    if (this.current) return;
    const recent = this.lastFailed;
    const state = recent && Date.now() - recent.at < RECHECK_MS ? recent.state : await this.state();
    if (state.current !== state.latest) throw notReady(state);
  }
}
