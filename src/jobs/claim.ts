import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { type Job, type JobRow, toJob } from "./types.ts";

/** Where a claim reads from in one (queue, task) lane: after this ready job, in claim order. */
export interface LaneCursor {
  priority: number;
  readySeq: number;
}

/** Lower than every priority: a lane claimed from here is read from its start (a sweep). */
export const SWEEP_PRIORITY = 32_767;

/** Where the promotion of due jobs reads from in a queue. */
export interface DueCursor {
  /** Kept to the millisecond (rounded down), so a claim reads a few entries again, never fewer. */
  runAt: Date;
  id: number;
}

// One statement claims for one queue, in four steps:
// 1. `me`: the worker's lease must be live, and is held FOR KEY SHARE: the reaper (which takes
//    the row FOR UPDATE) cannot mark this worker reaped while its claim is in flight, so no
//    claimed job is left without a lease; the heartbeat's update of the lease does not wait.
// 2. `promoted`: jobs of the queue that came due (scheduled, or retrying after a failure) become
//    pending with a fresh ready_seq, so they queue behind what was already ready. They are
//    claimable from the next claim on (this statement's snapshot does not see them).
// 3. `picked`: per (queue, task) lane, the next ready jobs in (priority, ready_seq) order after the
//    lane's cursor, plus any of a higher priority than the cursor's from the lane's start. A lane
//    is an index range (jobs_ready_idx), so a claim never reads jobs of tasks it cannot run, and
//    starting after the cursor it never reads the entries that claimed jobs left behind: those
//    stay in the index until vacuum removes them, which a transaction held open anywhere on the
//    server can postpone for hours. Rows other workers hold are skipped (SKIP LOCKED).
// 4. `claimed`: the picked jobs become running, leased by this worker, with one more attempt.
// A paused queue, or a worker whose lease is gone, promotes and claims nothing; a queue that has
// limits now is not claimed here (the summary says so, and the worker uses `claim_limited`). The last row is a
// summary (id NULL): how many jobs were promoted, up to where, when the next job of the queue
// comes due (so the worker sets a timer, whoever submitted it), and whether the lease was live.
// Parameters of both claims: $1 worker, $2 queue, $3/$4 the promotion cursor, $5 the promotion
// limit, $6 the most jobs to claim, $7 the worker's tasks; the lane claim adds $8–$10 (per task
// lane: how many to read, and the cursor). Shared steps: the lease check, the promotion of due
// jobs, and the summary row.
const LEASE_AND_PROMOTION = `me AS MATERIALIZED (
     SELECT w.id FROM {{schema}}.workers w
     WHERE w.id = $1 AND w.reaped_at IS NULL AND w.lease_expires_at > now()
     FOR KEY SHARE
   ), open AS MATERIALIZED (
     SELECT 1 AS ok FROM me
     WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.queues q WHERE q.name = $2 AND q.paused)
   ), settings AS MATERIALIZED (
     SELECT coalesce(bool_or({{schema}}.queue_is_limited(q)), false) AS limited,
            -- rate limits: how often a token comes (queue, key) and the queue's bucket as read
            -- before this claim (a claim of another worker may have taken from it since)
            min(q.rate_period_ms::double precision / q.rate_limit) AS token_ms,
            min(q.key_rate_period_ms::double precision / q.key_rate_limit) AS key_token_ms,
            min({{schema}}.refill(q.tokens, q.tokens_at, q.rate_limit, q.rate_period_ms,
                                  q.rate_burst, now())) AS tokens
     FROM {{schema}}.queues q WHERE q.name = $2
   ), due AS MATERIALIZED (
     SELECT x.id, nextval('{{schema}}.jobs_id_seq'::regclass) AS seq
     FROM (SELECT d.id FROM {{schema}}.jobs d
           WHERE d.queue = $2 AND d.status IN ('scheduled', 'retrying') AND d.run_at <= now()
             AND (d.run_at, d.id) > ($3::timestamptz, $4::bigint)
             AND EXISTS (SELECT 1 FROM open)
           ORDER BY d.run_at, d.id
           LIMIT $5
           FOR UPDATE SKIP LOCKED) x
   ), promoted AS (
     UPDATE {{schema}}.jobs j SET status = 'pending', ready_seq = due.seq, updated_at = now()
     FROM due WHERE j.id = due.id
     RETURNING j.id, j.run_at, j.concurrency_key
   ), promoted_keys AS (
     -- a key row forgotten while its job waited is made again (flow control serves keys by row)
     INSERT INTO {{schema}}.queue_keys (queue, key)
     SELECT DISTINCT $2, p.concurrency_key FROM promoted p WHERE p.concurrency_key IS NOT NULL
     ORDER BY 2
     ON CONFLICT (queue, key) DO NOTHING
   )`;

// A debounce key holds only until its job starts: a submission after that makes a new job.
const RELEASE_DEBOUNCE_KEYS = `debounce_released AS (
     DELETE FROM {{schema}}.job_keys k
     WHERE k.mode = 'debounce'
       AND k.job_id IN (SELECT c.id FROM claimed c WHERE c.key_mode = 'debounce')
   )`;

const SUMMARY = `summary AS (
     SELECT (SELECT count(*)::integer FROM promoted) AS promoted,
            (SELECT p.run_at::text FROM promoted p ORDER BY p.run_at DESC, p.id DESC LIMIT 1)
              AS promoted_run_at,
            (SELECT p.id FROM promoted p ORDER BY p.run_at DESC, p.id DESC LIMIT 1) AS promoted_id,
            (SELECT n.run_at::text FROM {{schema}}.jobs n
             WHERE n.queue = $2 AND n.status IN ('scheduled', 'retrying')
               AND (n.run_at, n.id) > ($3::timestamptz, $4::bigint)
             ORDER BY n.run_at, n.id LIMIT 1) AS next_due,
            EXISTS (SELECT 1 FROM me) AS live,
            (SELECT limited FROM settings) AS limited,
            (SELECT token_ms FROM settings) AS token_ms,
            (SELECT key_token_ms FROM settings) AS key_token_ms,
            (SELECT tokens FROM settings) AS tokens,
            -- ready jobs of our tasks before this claim (up to one more than it could take): a
            -- rate-limited claim that left some sets a timer for the next token, one that left
            -- none waits to be woken
            CASE WHEN (SELECT limited FROM settings) THEN
              (SELECT count(*)::integer FROM (
                 SELECT 1 FROM {{schema}}.jobs r
                 WHERE r.queue = $2 AND r.status = 'pending' AND r.task = ANY ($7::text[])
                 LIMIT $6 + 1) r) END AS ready
   )
   SELECT c.*, s.promoted, s.promoted_run_at, s.promoted_id, s.next_due, s.live, s.limited,
          s.token_ms, s.key_token_ms, s.tokens, s.ready
   FROM summary s LEFT JOIN claimed c ON true`;

const CLAIM_JOBS = statement(
  "claim_jobs",
  `WITH ${LEASE_AND_PROMOTION}, picked AS (
     SELECT c.id
     FROM open, settings, unnest($7::text[], $8::integer[], $9::integer[], $10::bigint[]) AS l(task, n, cp, cs)
     CROSS JOIN LATERAL (
       SELECT * FROM (
         SELECT a.id, a.priority, a.ready_seq FROM {{schema}}.jobs a
         WHERE a.queue = $2 AND a.task = l.task AND a.status = 'pending' AND a.priority < l.cp
         ORDER BY a.priority, a.ready_seq
         LIMIT l.n
         FOR UPDATE SKIP LOCKED) ahead
       UNION ALL
       SELECT * FROM (
         SELECT b.id, b.priority, b.ready_seq FROM {{schema}}.jobs b
         WHERE b.queue = $2 AND b.task = l.task AND b.status = 'pending'
           AND (b.priority, b.ready_seq) > (l.cp, l.cs)
         ORDER BY b.priority, b.ready_seq
         LIMIT l.n
         FOR UPDATE SKIP LOCKED) after
       ORDER BY 2, 3
       LIMIT l.n) c
     WHERE NOT settings.limited
     ORDER BY c.priority, c.ready_seq
     LIMIT $6
   ), claimed AS (
     UPDATE {{schema}}.jobs j
     SET status = 'running', attempts = j.attempts + 1, lease_owner = $1, started_at = now(),
         updated_at = now()
     WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
     RETURNING j.*
   ), ${RELEASE_DEBOUNCE_KEYS}, ${SUMMARY}`,
);

// The claim of a limited queue (0005_flow_control.sql, `claim_limited`): the function takes the
// queue's row and applies every limit (it keeps the key lanes' cursors itself); the steps around it
// are the same.
const CLAIM_LIMITED = statement(
  "claim_limited_jobs",
  `WITH ${LEASE_AND_PROMOTION}, claimed AS (
     SELECT j.* FROM {{schema}}.claim_limited($1, $2, $7::text[], $6) j
   ), ${RELEASE_DEBOUNCE_KEYS}, ${SUMMARY}`,
);

export interface ClaimLane {
  task: string;
  /** Most jobs to read from this lane. */
  limit: number;
  /** Read after this position; `SWEEP_PRIORITY` reads the whole lane. */
  after: LaneCursor;
}

export interface ClaimOptions {
  workerId: string;
  queue: string;
  /** The queue has limits (flow control): claim through `claim_limited`, lanes are ignored. */
  limited?: boolean;
  lanes: readonly ClaimLane[];
  /** Most jobs to take from all lanes together (the first in claim order). */
  limit: number;
  /** Promote due jobs after this position (in run_at, id order), at most `promoteLimit`. */
  dueAfter: DueCursor;
  promoteLimit: number;
}

/** A claimed job and its place in its lane. */
export interface ClaimedJob {
  job: Job;
  position: LaneCursor;
}

export interface ClaimResult {
  claimed: ClaimedJob[];
  /** Jobs of the queue that came due and became pending (claimable from the next claim). */
  promoted: number;
  /** The last promoted job's position, when any was promoted. */
  promotedUpTo: DueCursor | null;
  /** When the next job of the queue that is not ready yet comes due (database clock). */
  nextDueAt: Date | null;
  /** False when the worker's lease had run out or it was reaped: nothing was claimed. */
  leaseLive: boolean;
  /** The queue has limits: claim it with `limited` (a lane claim of it takes nothing). */
  limited: boolean;
  /**
   * Rate limited with ready jobs left behind: claim again in this many ms, when the next token
   * is due (null: nothing to wait for — no rate limit, or nothing left to take).
   */
  nextTokenMs: number | null;
}

/** Claims from one queue's lanes for one worker and promotes that queue's due jobs. */
export async function claimJobs(
  db: Queryable,
  sql: SchemaSql,
  options: ClaimOptions,
): Promise<ClaimResult> {
  const { lanes } = options;
  const { rows } = await db.query<
    (JobRow | { [K in keyof JobRow]: null }) & {
      ready_seq: number;
      promoted: number | null;
      promoted_run_at: string | null;
      promoted_id: number | null;
      next_due: string | null;
      live: boolean | null;
      limited: boolean | null;
      token_ms: number | null;
      key_token_ms: number | null;
      tokens: number | null;
      ready: number | null;
    }
  >({
    ...sql.bind(options.limited ? CLAIM_LIMITED : CLAIM_JOBS),
    values: [
      options.workerId,
      options.queue,
      options.dueAfter.runAt.toISOString(),
      options.dueAfter.id,
      options.promoteLimit,
      options.limit,
      lanes.map((l) => l.task),
      ...(options.limited
        ? []
        : [
            lanes.map((l) => l.limit),
            lanes.map((l) => l.after.priority),
            lanes.map((l) => l.after.readySeq),
          ]),
    ],
  });
  const summary = rows[0]!;
  const claimedRows = rows.filter(
    (row): row is JobRow & typeof row & { ready_seq: number } => row.id !== null,
  );
  return {
    claimed: claimedRows.map((row) => ({
      job: toJob(row),
      position: { priority: row.priority, readySeq: row.ready_seq },
    })),
    promoted: summary.promoted ?? 0,
    promotedUpTo:
      summary.promoted_run_at !== null && summary.promoted_id !== null
        ? { runAt: new Date(summary.promoted_run_at), id: summary.promoted_id }
        : null,
    nextDueAt: summary.next_due === null ? null : new Date(summary.next_due),
    leaseLive: summary.live === true,
    limited: summary.limited === true,
    nextTokenMs: nextTokenWait(summary, claimedRows.length),
  };
}

/**
 * When a rate-limited claim should come again: when the queue's bucket holds its next whole
 * token (from the bucket as read before the claim, less what it took), or a key's next token
 * may have come. Claims that left no ready job wait to be woken instead: an idle rate-limited
 * queue costs nothing.
 */
function nextTokenWait(
  summary: {
    limited: boolean | null;
    token_ms: number | null;
    key_token_ms: number | null;
    tokens: number | null;
    ready: number | null;
  },
  claimed: number,
): number | null {
  if (!summary.limited || (summary.ready ?? 0) <= claimed) return null;
  const waits: number[] = [];
  if (summary.token_ms !== null) {
    const tokenMs = Number(summary.token_ms);
    const left = Number(summary.tokens ?? 0) - claimed;
    // A whole token left means something else held this claim back (a concurrency limit, or a
    // claim of another worker took the tokens since we read them): look again a token later.
    waits.push(left >= 1 ? tokenMs : (1 - Math.max(0, left)) * tokenMs);
  }
  if (summary.key_token_ms !== null) waits.push(Number(summary.key_token_ms));
  return waits.length > 0 ? Math.min(...waits) : null;
}

/** Orders lane positions: negative when `a` comes first. */
export function compareLanePositions(a: LaneCursor, b: LaneCursor): number {
  return a.priority - b.priority || a.readySeq - b.readySeq;
}
