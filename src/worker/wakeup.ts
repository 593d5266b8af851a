/**
 * The wake-up: how a job submitted to an idle fleet starts within milliseconds without costing
 * submitters a NOTIFY each. Everything it does, in one place (the SQL half is in
 * db/migrations/0003_engine.sql, under "wake-up", with `wake()` and the insert trigger's function
 * as 0005_flow_control.sql last replaced them).
 *
 * Why not one NOTIFY per insert: a transaction that notifies takes a cluster-wide lock at commit
 * (PostgreSQL `PreCommit_Notify`) and holds it through its WAL flush, so notifying commits run
 * one at a time. Instead, a submission notifies only when a worker waits, and only once per wait:
 *
 * 1. **Token.** A worker whose claim of a queue came back empty puts a one-shot token for that
 *    queue in `waiters` (with the tasks it runs and its LISTEN backend's pid), commits, then
 *    raises the `waiting` flag (a sequence: read without a lock) and lists the transactions of
 *    the database that hold an xid (`raise_waiting`). A worker that serves every queue also holds
 *    a `*` token for queues it has not met yet.
 * 2. **Submit.** The insert trigger's WHEN clause reads the flag: while nobody waits, a
 *    submission pays one sequence read. Otherwise the trigger notes, for each queue someone waits
 *    for (a token of that queue or a `*` token that does not exclude it), the ready tasks, their
 *    count and the earliest time of jobs due later, and at commit (a deferred trigger) `wake()`
 *    deletes up to that many tokens of live workers whose tasks match — taken in one global
 *    order and waited for, so a submitter that rolls back leaves the token to the next — and
 *    notifies exactly those workers (`{"q","w","t"}`). Jobs due later notify the queue's
 *    waiting workers of when (`{"q","at"}`), without spending tokens: they set a timer.
 * 3. **Wake.** A notified worker claims the notified lanes of that queue; its token is spent.
 *    While its claims keep finding jobs it claims again (after a few ms) without a token; when
 *    one comes back empty it puts its token back (1).
 * 4. **No lost wake-up.** A submitter that read the flag down (or saw no token) did so before the
 *    token was visible, so when the worker raised the flag that submitter had either committed
 *    (the worker's next claim sees its jobs) or held an xid and is on the worker's list: the
 *    worker claims again whenever one of those ends (a cheap poll with backoff, here). A worker
 *    killed while waiting leaves a token whose listener pid is gone: `wake()` deletes it when it
 *    reaches it and spends the next one (maintenance deletes those it never reaches). Tokens carry tasks, so a job of task b never spends the token of a worker that only runs
 *    task a. A repeatable-read submitter (whose snapshot may predate a token) tells every waiting
 *    worker of the queue instead.
 * 5. **Behind the cursors.** Jobs made ready other than by an insert — reaped, handed back,
 *    retried, a queue resumed — may sit before where workers' claims start
 *    (src/worker/claimScheduler.ts): `wake_queues` wakes the waiting workers with `sweep`.
 * 6. **NOTIFY is a hint.** The jittered poll and the timers to known due times find everything
 *    anyway; turning notifications off changes latency, never outcomes.
 */
import type pg from "pg";
import { type SchemaSql, statement } from "../db/sql.ts";
import type { Logger } from "../logger.ts";

const PUT_TOKENS = statement(
  "put_wake_tokens",
  `INSERT INTO {{schema}}.waiters AS w (queue, worker_id, tasks, listener_pid, excluded)
   SELECT q, $2, $3::text[], $4, CASE WHEN q = '*' THEN $5::text[] END FROM unnest($1::text[]) AS q
   ON CONFLICT (queue, worker_id) DO UPDATE
   SET tasks = EXCLUDED.tasks, listener_pid = EXCLUDED.listener_pid, excluded = EXCLUDED.excluded,
       since = now()`,
);

const RAISE = statement("raise_waiting", "SELECT {{schema}}.raise_waiting() AS xids");

const STILL_RUNNING = statement(
  "still_running_xids",
  "SELECT {{schema}}.still_running($1::text[]) AS xids",
);

const TAKE_TOKENS = statement(
  "take_wake_tokens",
  `WITH gone AS (
     DELETE FROM {{schema}}.waiters WHERE worker_id = $1 AND (queue = ANY ($2::text[]) OR $2 IS NULL)
   )
   SELECT {{schema}}.lower_waiting()`,
);

/** What a notification on the jobs channel asks of this worker. */
export type WakeNotice =
  | {
      kind: "ready";
      queue: string;
      tasks: string[] | null;
      sweep: boolean;
      /** The token of ours this spent (the queue, or '*'), if any. */
      spent: string | null;
    }
  | { kind: "due"; queue: string; atMs: number };

/** Parses a notification on the jobs channel; null when it is not for this worker. */
export function parseWakeNotice(payload: string, workerId: string): WakeNotice | null {
  let message: unknown;
  try {
    message = JSON.parse(payload);
  } catch {
    return null;
  }
  if (typeof message !== "object" || message === null) return null;
  const { q, w, k, t, at, sweep } = message as Record<string, unknown>;
  if (typeof q !== "string") return null;
  if (typeof at === "number") return { kind: "due", queue: q, atMs: at };
  if (w !== undefined && w !== workerId) return null;
  const tasks = Array.isArray(t) && t.length > 0 ? t.filter((x) => typeof x === "string") : null;
  const spent = w === workerId ? (typeof k === "string" ? k : q) : null;
  return { kind: "ready", queue: q, tasks, sweep: sweep === true, spent };
}

export interface WakeupOptions {
  pool: pg.Pool;
  sql: SchemaSql;
  workerId: () => string;
  tasks: readonly string[];
  logger: Logger;
  /** Transactions that may have submitted unseen have ended: claim these queues again. */
  onRecheck: (queues: readonly string[]) => void;
}

/**
 * The worker's half of the wake-up: which queues it holds tokens for, putting and taking them
 * (coalesced per event-loop turn into one statement each), and watching the transactions listed
 * when a token went up.
 */
export class Wakeup {
  /** Queues with a token of ours in the database (or on its way). */
  private readonly held = new Set<string>();
  private readonly toPut = new Set<string>();
  private readonly toTake = new Set<string>();
  private flushing = false;
  private flushTimer: NodeJS.Immediate | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  /** Transactions in progress when a token went up, and the queues to claim when they end. */
  private watched = new Map<string, Set<string>>();
  private watchTimer: NodeJS.Timeout | undefined;
  private watchDelayMs = 2;
  private watching = false;
  private listenerPid: number | undefined;
  /** Queues the `*` token leaves out: those with tokens (or claims) of their own. */
  private known: readonly string[] = [];
  private stopped = false;
  private readonly options: WakeupOptions;

  constructor(options: WakeupOptions) {
    this.options = options;
  }

  /** The LISTEN connection is up (with this backend pid), or down (undefined): tokens follow. */
  setListener(pid: number | undefined): void {
    this.listenerPid = pid;
    if (pid === undefined) {
      // Nobody hears our notifications now: spare submitters the cost (best effort).
      const all = [...this.held];
      this.held.clear();
      this.toPut.clear();
      for (const q of all) this.toTake.add(q);
      this.schedule();
    }
  }

  get listening(): boolean {
    return this.listenerPid !== undefined && !this.stopped;
  }

  /** Whether a token of ours for `queue` is up. */
  holds(queue: string): boolean {
    return this.held.has(queue);
  }

  /** Sets the queues the `*` token leaves out. */
  setKnownQueues(queues: readonly string[]): void {
    this.known = queues;
  }

  /** Asks to be woken for `queue` ('*': queues not met yet). */
  put(queue: string): void {
    if (!this.listening || this.held.has(queue)) return;
    this.held.add(queue);
    this.toTake.delete(queue);
    this.toPut.add(queue);
    this.schedule();
  }

  /** Takes our token for `queue` back (we are busy with it). */
  take(queue: string): void {
    if (!this.held.delete(queue)) return;
    this.toPut.delete(queue);
    this.toTake.add(queue);
    this.schedule();
  }

  /** A notification spent our token for `queue`. */
  spent(queue: string): void {
    this.held.delete(queue);
  }

  /** Stops: takes every token back (bounded by the pool's statement timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.flushTimer) clearImmediate(this.flushTimer);
    clearTimeout(this.watchTimer);
    this.watched.clear();
    this.toPut.clear();
    await this.chain;
    await this.options.pool
      .query({ ...this.options.sql.bind(TAKE_TOKENS), values: [this.options.workerId(), null] })
      .catch((error) => this.options.logger.debug({ err: error }, "could not take tokens back"));
    this.held.clear();
  }

  private schedule(): void {
    if (this.flushTimer || this.flushing || this.stopped) return;
    this.flushTimer = setImmediate(() => {
      this.flushTimer = undefined;
      this.chain = this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (!this.stopped && (this.toTake.size > 0 || this.toPut.size > 0)) {
        const { pool, sql, logger } = this.options;
        const workerId = this.options.workerId();
        if (this.toTake.size > 0) {
          const queues = [...this.toTake];
          this.toTake.clear();
          try {
            await pool.query({ ...sql.bind(TAKE_TOKENS), values: [workerId, queues] });
          } catch (error) {
            logger.warn({ err: error }, "could not take wake-up tokens back");
          }
        }
        if (this.toPut.size > 0 && this.listenerPid !== undefined) {
          const queues = [...this.toPut];
          this.toPut.clear();
          try {
            await pool.query({
              ...sql.bind(PUT_TOKENS),
              values: [queues, workerId, this.options.tasks, this.listenerPid, this.known],
            });
            const { rows } = await pool.query<{ xids: string[] }>(sql.bind(RAISE));
            this.watch(rows[0]?.xids ?? [], queues);
            // What was committed before the token went up is claimable now.
            this.options.onRecheck(queues);
          } catch (error) {
            for (const q of queues) this.held.delete(q);
            logger.warn({ err: error }, "could not register for wake-ups; polling");
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Claims `queues` again whenever some of `xids` end, until all have: they were running when the
   * token went up and may have submitted without seeing it. Polls with backoff (2 ms to 100 ms,
   * back to 2 ms whenever new ones are added) and blocks nobody: a transaction left open for
   * minutes costs this cheap query.
   */
  private watch(xids: readonly string[], queues: readonly string[]): void {
    if (this.stopped) return;
    for (const xid of xids) {
      const set = this.watched.get(xid) ?? new Set<string>();
      for (const q of queues) set.add(q);
      this.watched.set(xid, set);
    }
    if (this.watched.size === 0) return;
    this.watchDelayMs = 2;
    if (this.watching) return; // the check under way reschedules with the reset delay
    clearTimeout(this.watchTimer);
    this.watchTimer = setTimeout(() => void this.check(), this.watchDelayMs);
  }

  private async check(): Promise<void> {
    this.watchTimer = undefined;
    if (this.stopped || this.watched.size === 0) return;
    this.watching = true;
    const checking = [...this.watched.keys()];
    let still = new Set(checking);
    try {
      const { rows } = await this.options.pool.query<{ xids: string[] }>({
        ...this.options.sql.bind(STILL_RUNNING),
        values: [checking],
      });
      still = new Set(rows[0]?.xids ?? []);
    } catch (error) {
      this.options.logger.warn({ err: error }, "could not check transactions in progress");
    } finally {
      this.watching = false;
    }
    const recheck = new Set<string>();
    for (const xid of checking) {
      if (still.has(xid)) continue;
      for (const q of this.watched.get(xid) ?? []) recheck.add(q);
      this.watched.delete(xid);
    }
    if (recheck.size > 0 && !this.stopped) this.options.onRecheck([...recheck]);
    if (this.watched.size === 0 || this.stopped) return;
    this.watchTimer = setTimeout(() => void this.check(), this.watchDelayMs);
    this.watchDelayMs = Math.min(100, this.watchDelayMs * 2);
  }
}
