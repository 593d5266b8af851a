import type pg from "pg";
import type { SchemaSql } from "../db/sql.ts";
import {
  type ClaimedJob,
  type ClaimLane,
  claimJobs,
  compareLanePositions,
  type DueCursor,
  type LaneCursor,
  SWEEP_PRIORITY,
} from "../jobs/claim.ts";
import type { Logger } from "../logger.ts";
import { recordClaim } from "../tracing.ts";
import type { Wakeup } from "./wakeup.ts";

/**
 * What a queue's claims are doing, one at a time:
 * - `idle`: nothing in flight; waiting for a wake-up, a timer, a poll or room for more jobs.
 * - `claiming`: a claim statement in flight (requests meanwhile make it claim again after).
 * - `cooling`: the last claim found jobs but fewer than asked; the next is due after the cooldown.
 * - `backoff`: the last claim failed; the next is due after a backoff (100 ms doubling to 5 s).
 * - `fenced`: the worker could not renew its lease; no claim until `resume()`.
 * - `stopped`: for good.
 */
export type ClaimState = "idle" | "claiming" | "cooling" | "backoff" | "fenced" | "stopped";

/** How far back of a lane's cursor a claim reads, for jobs that committed late (see below). */
const CURSOR_SLACK = 1_024;
/** Sweeps run at most this often, and no more than 5% of the time a claim takes. */
const SWEEP_MIN_INTERVAL_MS = 1_000;
const SWEEP_COST_FACTOR = 20;
/** The promotion cursor reads this far back in time. */
const DUE_SLACK_MS = 1_000;
const PROMOTE_LIMIT = 1_000;
/** Future run times remembered per queue; the poll covers any beyond. */
const MAX_DUE_TIMES = 64;

export interface ClaimSchedulerOptions {
  queue: string;
  /** Tasks this worker runs: one lane each. */
  tasks: readonly string[];
  pool: pg.Pool;
  sql: SchemaSql;
  workerId: () => string;
  logger: Logger;
  wakeup: Wakeup | undefined;
  claimCooldownMs: number;
  /** How many jobs this queue may take now (its free slots and buffer room); 0: no room. */
  room: () => number;
  /** Claimed jobs, in claim order, for the worker's buffer. */
  onClaimed: (jobs: ClaimedJob[]) => void;
  /** Each claim's round trip, size and kind (for metrics). */
  onClaimMeasured?: (measure: { queue: string; ms: number; size: number; sweep: boolean }) => void;
}

interface Pending {
  /** Lanes to read; null: all. */
  tasks: Set<string> | null;
  sweep: boolean;
}

/**
 * One queue's claims: when to claim, how many, from where. Claims read each (queue, task) lane
 * from a cursor, the lane position of the last job this worker claimed there, less a slack of
 * CURSOR_SLACK positions: claimed jobs leave dead entries at the front of the ready index, which
 * vacuum cannot remove while any transaction on the server holds an old snapshot, and reading
 * from the cursor never reads them again. Jobs of a higher priority than the cursor's are read
 * from the lane's start (see src/jobs/claim.ts).
 *
 * What can become ready behind a cursor: a job whose transaction committed after later ones were
 * claimed (within the slack for a few hundred positions, the common case with concurrent
 * submitters), and jobs put back in place (reaped, returned, an explicit past run_at). A sweep —
 * a claim of every lane from its start, and of every due job — finds those: when asked (the
 * wake-up says `sweep`), and at least every SWEEP_MIN_INTERVAL_MS while claims run. A sweep reads
 * the dead entries, so under a held horizon it is spaced out to cost at most 1/SWEEP_COST_FACTOR
 * of the time: throughput stays flat, and a job behind the cursors waits a little longer.
 */
export class ClaimScheduler {
  readonly queue: string;
  private state: ClaimState = "idle";
  private pending: Pending | null = null;
  /** The last claim was full: more jobs are probably waiting. */
  private more = false;
  private readonly cursors = new Map<string, LaneCursor>();
  private dueCursor: DueCursor | null = null;
  /** The queue has limits (flow control): its claims go through `claim_limited`. */
  private limited = false;
  private nextSweepAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private dueTimes: number[] = [];
  private dueTimer: NodeJS.Timeout | undefined;
  private backoffMs = 0;
  private inFlight: Promise<void> | undefined;
  private claimingSince = 0;
  private readonly options: ClaimSchedulerOptions;
  /** Claims and sweeps made (for tests and metrics). */
  readonly stats = { claims: 0, sweeps: 0, claimed: 0, promoted: 0, failures: 0 };

  constructor(options: ClaimSchedulerOptions) {
    this.options = options;
    this.queue = options.queue;
  }

  get claimState(): ClaimState {
    return this.state;
  }

  /** How long the claim in flight has taken so far (0 when none is). */
  claimingForMs(now = performance.now()): number {
    return this.state === "claiming" ? now - this.claimingSince : 0;
  }

  /** Something may be ready in these lanes (null: any); `sweep` reads from the lanes' starts. */
  request(request: { tasks?: readonly string[] | null; sweep?: boolean } = {}): void {
    if (this.state === "stopped" || this.state === "fenced") return;
    const tasks = request.tasks ? new Set(request.tasks) : null;
    if (this.pending) {
      this.pending.sweep ||= request.sweep ?? false;
      if (this.pending.tasks === null || tasks === null) this.pending.tasks = null;
      else for (const t of tasks) this.pending.tasks.add(t);
    } else {
      this.pending = { tasks, sweep: request.sweep ?? false };
    }
    // While cooling, the claim due after the cooldown takes the request along.
    if (this.state === "idle") this.soon();
  }

  /** The worker has room again: claim if jobs are (probably) waiting. */
  roomAvailable(): void {
    if (this.state === "idle" && (this.more || this.pending)) {
      this.pending ??= { tasks: null, sweep: false };
      this.soon();
    }
  }

  /** A job of this queue is due at `atMs` (epoch ms, database clock): claim then. */
  dueAt(atMs: number, nowMs = Date.now()): void {
    if (this.state === "stopped") return;
    const at = nowMs + Math.max(0, atMs - nowMs);
    if (this.dueTimes.includes(at)) return;
    this.dueTimes.push(at);
    this.dueTimes.sort((a, b) => a - b);
    if (this.dueTimes.length > MAX_DUE_TIMES) this.dueTimes.pop();
    if (this.dueTimes[0] === at) this.armDue();
  }

  /** Whether the queue has limits (as its last claim found). */
  get isLimited(): boolean {
    return this.limited;
  }

  /** Stops claiming until `resume()` (the worker could not renew its lease). */
  fence(): void {
    if (this.state === "stopped") return;
    this.clearTimers();
    this.state = "fenced";
    this.pending = null;
  }

  /** Claims again after a fence, reading every lane from its start. */
  resume(): void {
    if (this.state !== "fenced") return;
    this.state = "idle";
    this.request({ sweep: true });
  }

  /** Stops for good; resolves once no claim is in flight. */
  async stop(): Promise<void> {
    this.state = "stopped";
    this.clearTimers();
    this.dueTimes = [];
    await this.inFlight;
  }

  private clearTimers(): void {
    clearTimeout(this.timer);
    clearTimeout(this.dueTimer);
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
  }

  private armDue(): void {
    clearTimeout(this.dueTimer);
    const at = this.dueTimes[0];
    if (at === undefined) return;
    this.dueTimer = setTimeout(
      () => {
        const now = Date.now();
        while (this.dueTimes.length > 0 && this.dueTimes[0]! <= now) this.dueTimes.shift();
        this.armDue();
        this.request();
      },
      Math.max(0, at - Date.now()) + 1,
    );
  }

  /** Requests made in the same turn of the event loop share one claim. */
  private soon(): void {
    if (this.immediate || this.state !== "idle") return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      if (this.state === "idle" && this.pending) this.inFlight = this.claim();
    });
  }

  private async claim(): Promise<void> {
    const request = this.pending!;
    const limit = this.options.room();
    if (limit <= 0) {
      // No room: keep the request; `roomAvailable` brings us back.
      this.more ||= request.tasks === null;
      return;
    }
    this.pending = null;
    this.state = "claiming";
    const { tasks, queue, pool, sql, logger } = this.options;
    const started = performance.now();
    this.claimingSince = started;
    const sweep = request.sweep || started >= this.nextSweepAt;
    const laneTasks =
      sweep || request.tasks === null ? tasks : tasks.filter((t) => request.tasks!.has(t));
    const lanes: ClaimLane[] = laneTasks.map((task) => {
      const cursor = this.cursors.get(task);
      return {
        task,
        limit,
        after:
          sweep || !cursor
            ? { priority: SWEEP_PRIORITY, readySeq: 0 }
            : { priority: cursor.priority, readySeq: cursor.readySeq - CURSOR_SLACK },
      };
    });
    const due = this.dueCursor;
    const dueAfter =
      sweep || !due
        ? { runAt: new Date(0), id: 0 }
        : { runAt: new Date(due.runAt.getTime() - DUE_SLACK_MS), id: 0 };
    let claimed: ClaimedJob[];
    let promoted = 0;
    try {
      this.stats.claims++;
      const result = await claimJobs(pool, sql, {
        workerId: this.options.workerId(),
        queue,
        limited: this.limited,
        lanes,
        limit,
        dueAfter,
        promoteLimit: PROMOTE_LIMIT,
      });
      claimed = result.claimed;
      if (result.nextTokenMs !== null && result.claimed.length < limit) {
        // Rate limited with jobs left: claim again when the next token is due.
        this.dueAt(Date.now() + Math.max(1, Math.ceil(result.nextTokenMs)));
      }
      if (result.limited !== this.limited) {
        // Limits were set or removed: the next claim takes the other path (this one took
        // nothing it was not allowed to).
        this.limited = result.limited;
        this.pending = mergePending(this.pending, { tasks: null, sweep: true });
      }
      promoted = result.promoted;
      if (result.promotedUpTo) this.dueCursor = result.promotedUpTo;
      // Whoever submitted it, the next job due here gets a timer (a timer that fires a hair early
      // finds it not yet due, and the claim then returns the same time again).
      if (result.nextDueAt) this.dueAt(result.nextDueAt.getTime());
      if (!result.leaseLive) {
        // Our lease ran out (or we were reaped): the lease keeper fences or starts us over.
        logger.debug({ queue }, "claim refused: the worker's lease is not live");
      }
      this.backoffMs = 0;
    } catch (error) {
      this.stats.failures++;
      this.backoffMs = Math.min(5_000, Math.max(100, this.backoffMs * 2));
      logger.warn({ err: error, queue, retryInMs: this.backoffMs }, "claim failed");
      if (this.state !== "claiming") return; // stopped or fenced meanwhile
      this.pending = mergePending(this.pending, { tasks: null, sweep: request.sweep });
      this.state = "backoff";
      this.timer = setTimeout(() => {
        this.state = "idle";
        this.soon();
      }, this.backoffMs);
      return;
    }
    const tookMs = performance.now() - started;
    this.options.onClaimMeasured?.({ queue, ms: tookMs, size: claimed.length, sweep });
    if (claimed.length > 0) {
      recordClaim(
        queue,
        claimed.map((c) => c.job),
        Date.now() - tookMs,
        this.options.workerId(),
      );
    }
    if (sweep) {
      this.stats.sweeps++;
      this.nextSweepAt =
        performance.now() + Math.max(SWEEP_MIN_INTERVAL_MS, SWEEP_COST_FACTOR * tookMs);
    }
    for (const { job, position } of claimed) {
      const cursor = this.cursors.get(job.task);
      if (!cursor || compareLanePositions(position, cursor) > 0)
        this.cursors.set(job.task, position);
    }
    this.stats.claimed += claimed.length;
    this.stats.promoted += promoted;
    if (claimed.length > 0) this.options.onClaimed(claimed);
    if (this.state !== "claiming") return; // stopped or fenced meanwhile: the jobs were handed over

    const wakeup = this.options.wakeup;
    if (claimed.length >= limit) {
      // A full claim: more are probably waiting. No wake-up needed meanwhile.
      this.more = true;
      wakeup?.take(queue);
      this.state = "idle";
      this.pending ??= { tasks: null, sweep: false };
      this.soon();
    } else if ((claimed.length > 0 || promoted > 0) && this.options.claimCooldownMs > 0) {
      // Jobs are arriving: take the next ones together in a moment. Asking to be woken now would
      // cost a token, a NOTIFY and a claim for every few jobs.
      this.more = false;
      this.pending = mergePending(this.pending, { tasks: null, sweep: false });
      this.state = "cooling";
      this.timer = setTimeout(
        () => {
          this.state = "idle";
          this.soon();
        },
        promoted > 0 ? 0 : this.options.claimCooldownMs,
      );
    } else {
      // Caught up: ask to be woken (the token's registration claims once more for what was
      // committed meanwhile).
      this.more = false;
      this.state = "idle";
      if (this.pending) this.soon();
      else wakeup?.put(queue);
    }
  }
}

function mergePending(a: Pending | null, b: Pending): Pending {
  if (!a) return b;
  return {
    tasks: a.tasks === null || b.tasks === null ? null : new Set([...a.tasks, ...b.tasks]),
    sweep: a.sweep || b.sweep,
  };
}
