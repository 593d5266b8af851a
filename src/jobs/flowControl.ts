import { type SchemaSql, statement } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { PgwakeError } from "../errors.ts";

/** A queue's limits across every worker (flow control); absent: no limit. */
export interface QueueLimits {
  /** Jobs of the queue running at once. */
  concurrency?: number | null;
  /** Jobs of one concurrency key running at once (1: a strict serial lane per key). */
  keyConcurrency?: number | null;
  /** Job starts per `ratePeriodMs` for the queue, from a token bucket holding `rateBurst`. */
  rateLimit?: number | null;
  ratePeriodMs?: number;
  /** Starts allowed at once (default 1: starts are spread evenly over the period). */
  rateBurst?: number | null;
  /** The same per concurrency key. */
  keyRateLimit?: number | null;
  keyRatePeriodMs?: number;
  keyRateBurst?: number | null;
  /** Keys share the queue's slots in turn (round robin) instead of first come, first served. */
  fair?: boolean;
}

const MAX_INT32 = 2_147_483_647;
const COUNTS = [
  "concurrency",
  "keyConcurrency",
  "rateLimit",
  "rateBurst",
  "keyRateLimit",
  "keyRateBurst",
] as const;
const PERIODS = ["ratePeriodMs", "keyRatePeriodMs"] as const;

/**
 * Refuses limits the database would (INVALID_OPTIONS naming every bad field): counts are whole
 * numbers from 1 (or null: no such limit), periods whole milliseconds from 1, `fair` a boolean.
 */
export function checkQueueLimits(limits: QueueLimits): void {
  const issues: { path: string; message: string }[] = [];
  const whole = (value: unknown) =>
    typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= MAX_INT32;
  for (const field of COUNTS) {
    const value = limits[field];
    if (value !== undefined && value !== null && !whole(value)) {
      issues.push({ path: field, message: "a whole number from 1 to 2147483647, or null" });
    }
  }
  for (const field of PERIODS) {
    const value = limits[field];
    if (value !== undefined && !whole(value)) {
      issues.push({ path: field, message: "whole milliseconds from 1 to 2147483647" });
    }
  }
  if (limits.fair !== undefined && typeof limits.fair !== "boolean") {
    issues.push({ path: "fair", message: "true or false" });
  }
  if (issues.length > 0) {
    throw new PgwakeError(
      "INVALID_OPTIONS",
      `invalid queue limits: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
      { details: issues },
    );
  }
}

/**
 * Who set a queue's limits: an operator (HTTP, CLI, SQL, `setQueueLimits`), kept until changed,
 * or the task definitions (their `queueLimits`, applied by workers as they start unless an
 * operator's limits are in place); null when none are set.
 */
export type LimitsSource = "operator" | "tasks";

/** A queue's limits as stored, with their state. */
export interface QueueFlow extends Required<QueueLimits> {
  name: string;
  paused: boolean;
  /** True when any limit is set (claims of the queue go through the limited path). */
  limited: boolean;
  source: LimitsSource | null;
  /** Jobs running that hold one of the queue's slots (claimed under a limit). */
  running: number;
  /** Tokens left in the queue's bucket now (null without a rate limit). */
  tokens: number | null;
  /** Pending jobs held back by a limit now (counted up to 10,000). */
  throttled: number;
  updatedAt: Date;
}

/** Why a live job has not started yet (`waitingFor`). */
export type WaitReason =
  | { reason: "ready" }
  | { reason: "queue_paused" }
  | { reason: "run_at"; runAt: string }
  | { reason: "queue_concurrency"; limit: number; running: number }
  | { reason: "queue_rate"; limit: number; periodMs: number; nextTokenMs: number }
  | { reason: "key_concurrency"; key: string; limit: number; running: number }
  | { reason: "key_rate"; key: string; limit: number; periodMs: number; nextTokenMs: number }
  | { reason: "key_order"; key: string };

interface QueueRow {
  name: string;
  paused: boolean;
  concurrency: number | null;
  key_concurrency: number | null;
  rate_limit: number | null;
  rate_period_ms: number;
  rate_burst: number | null;
  key_rate_limit: number | null;
  key_rate_period_ms: number;
  key_rate_burst: number | null;
  fair: boolean;
  limits_source: LimitsSource | null;
  limited: boolean;
  running: number;
  tokens_now: number | null;
  throttled: number;
  updated_at: Date;
}

const FLOW_COLUMNS = `q.*,
  {{schema}}.queue_is_limited(q) AS limited,
  {{schema}}.refill(q.tokens, q.tokens_at, q.rate_limit, q.rate_period_ms, q.rate_burst, now())
    AS tokens_now,
  {{schema}}.queue_throttled(q, 10000) AS throttled`;

const SET_LIMITS = statement(
  "set_queue_limits",
  `SELECT ${FLOW_COLUMNS}
   FROM {{schema}}.set_queue_limits($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) q`,
);

/**
 * Sets a queue's limits (replacing all of them: what is not given is removed). Every worker
 * applies them from its next claim of the queue; running jobs are not aborted when a limit goes
 * down, new starts stop until they fit. `source` "tasks" sets defaults that an operator's limits
 * override; null clears the limits and their source.
 */
export async function setQueueLimits(
  db: Queryable,
  sql: SchemaSql,
  queue: string,
  limits: QueueLimits,
  source: LimitsSource | null = "operator",
): Promise<QueueFlow> {
  const { rows } = await db.query<QueueRow>({
    ...sql.bind(SET_LIMITS),
    values: [
      queue,
      limits.concurrency ?? null,
      limits.keyConcurrency ?? null,
      limits.rateLimit ?? null,
      limits.ratePeriodMs ?? 1_000,
      limits.rateBurst ?? null,
      limits.keyRateLimit ?? null,
      limits.keyRatePeriodMs ?? 1_000,
      limits.keyRateBurst ?? null,
      limits.fair ?? false,
      source,
    ],
  });
  return toFlow(rows[0]!);
}

const GET_FLOW = statement(
  "queue_flow",
  `SELECT ${FLOW_COLUMNS}
   FROM {{schema}}.queues q WHERE $1::text IS NULL OR q.name = $1
   ORDER BY q.name`,
);

/** The limits and state of one queue (or of every queue with a row). */
export async function queueFlows(
  db: Queryable,
  sql: SchemaSql,
  queue?: string,
): Promise<QueueFlow[]> {
  const { rows } = await db.query<QueueRow>({ ...sql.bind(GET_FLOW), values: [queue ?? null] });
  return rows.map(toFlow);
}

/** A concurrency key's state in a limited queue. */
export interface KeyFlow {
  key: string;
  running: number;
  tokens: number | null;
  /** Jobs of the key ready to run (counted up to 10,000). */
  pending: number;
}

// The busiest keys of a queue: by running jobs, then by jobs waiting (counted through the key
// lane index, up to a cap).
const KEY_FLOWS = statement(
  "queue_key_flows",
  `SELECT c.key, c.running,
          {{schema}}.refill(c.tokens, c.tokens_at, q.key_rate_limit, q.key_rate_period_ms,
                            q.key_rate_burst, now()) AS tokens,
          (SELECT count(*)::integer FROM (
             SELECT 1 FROM {{schema}}.jobs j
             WHERE j.queue = c.queue AND j.concurrency_key = c.key AND j.status = 'pending'
             LIMIT 10000) p) AS pending
   FROM {{schema}}.queue_keys c JOIN {{schema}}.queues q ON q.name = c.queue
   WHERE c.queue = $1
   ORDER BY c.running DESC, c.served, c.key
   LIMIT $2`,
);

export async function keyFlows(
  db: Queryable,
  sql: SchemaSql,
  queue: string,
  limit = 100,
): Promise<KeyFlow[]> {
  const { rows } = await db.query<{
    key: string;
    running: number;
    tokens: number | null;
    pending: number;
  }>({ ...sql.bind(KEY_FLOWS), values: [queue, limit] });
  return rows.map((r) => ({
    key: r.key,
    running: r.running,
    tokens: r.tokens === null ? null : Number(r.tokens),
    pending: r.pending,
  }));
}

const WAITING_FOR = statement("job_waiting_for", "SELECT {{schema}}.waiting_for($1) AS waiting");

/** Why a live job has not started (null when it is running, finished or unknown). */
export async function waitingFor(
  db: Queryable,
  sql: SchemaSql,
  id: number,
): Promise<WaitReason | null> {
  const { rows } = await db.query<{ waiting: WaitReason | null }>({
    ...sql.bind(WAITING_FOR),
    values: [id],
  });
  const waiting = rows[0]?.waiting ?? null;
  // JSON times come in Postgres's text format; the API writes ISO 8601 in UTC.
  if (waiting?.reason === "run_at") waiting.runAt = new Date(waiting.runAt).toISOString();
  return waiting;
}

// Keys jobs without a key in keyed queues and forgets idle keys — once across the fleet at a
// time — and lists the limited queues, whose slot counters are then recounted one queue per
// transaction (a safety net: the statements that end runs keep them right). One queue at a time,
// because statements that end runs lock the rows of several queues in name order: holding one
// queue's row while waiting for another's could deadlock with them.
const FLOW_MAINTENANCE = statement(
  "flow_maintenance",
  `WITH lock AS MATERIALIZED (
     SELECT pg_try_advisory_xact_lock(hashtext({{channel}}), hashtext('flow')) AS ok
   )
   SELECT ok,
          CASE WHEN ok THEN {{schema}}.key_unkeyed_jobs(NULL) END AS keyed,
          CASE WHEN ok AND $1 THEN {{schema}}.forget_idle_keys() END AS forgotten,
          CASE WHEN ok THEN ARRAY(SELECT q.name FROM {{schema}}.queues q
                                  WHERE {{schema}}.queue_is_limited(q) ORDER BY q.name) END
            AS limited
   FROM lock`,
);

const RECOUNT = statement("flow_recount", "SELECT {{schema}}.recount_slots($1) AS fixed");

/** One pass of flow control's maintenance; `forget` also drops idle key rows. */
export async function maintainFlow(
  db: Queryable,
  sql: SchemaSql,
  forget: boolean,
): Promise<{ keyed: number; recounted: number; forgotten: number }> {
  const { rows } = await db.query<{
    ok: boolean;
    keyed: number | null;
    forgotten: number | null;
    limited: string[] | null;
  }>({ ...sql.bind(FLOW_MAINTENANCE), values: [forget] });
  const row = rows[0]!;
  let recounted = 0;
  for (const queue of row.limited ?? []) {
    const result = await db.query<{ fixed: number }>({ ...sql.bind(RECOUNT), values: [queue] });
    recounted += result.rows[0]!.fixed;
  }
  return { keyed: row.keyed ?? 0, recounted, forgotten: row.forgotten ?? 0 };
}

function toFlow(row: QueueRow): QueueFlow {
  return {
    name: row.name,
    paused: row.paused,
    concurrency: row.concurrency,
    keyConcurrency: row.key_concurrency,
    rateLimit: row.rate_limit,
    ratePeriodMs: row.rate_period_ms,
    rateBurst: row.rate_burst,
    keyRateLimit: row.key_rate_limit,
    keyRatePeriodMs: row.key_rate_period_ms,
    keyRateBurst: row.key_rate_burst,
    fair: row.fair,
    limited: row.limited,
    source: row.limits_source,
    running: row.running,
    tokens: row.tokens_now === null ? null : Number(row.tokens_now),
    throttled: row.throttled,
    updatedAt: row.updated_at,
  };
}
