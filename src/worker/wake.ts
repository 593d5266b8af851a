import type pg from "pg";
import { type SchemaSql, statement } from "../db/sql.ts";

const REGISTER = statement(
  "register_waiter",
  `INSERT INTO {{schema}}.waiters (queue, worker_id)
   SELECT q, $2 FROM unnest($1::text[]) AS q
   ON CONFLICT (queue, worker_id) DO NOTHING`,
);

// Taken and released at once: waits for every insert that may have checked the waiters before
// our registration was visible (they hold the shared side until they commit). Keys are taken in
// the order the insert trigger uses, so the two never deadlock.
const BARRIER = statement(
  "waiter_barrier",
  `SELECT count(pg_advisory_xact_lock(hashtext({{channel}}), hashtext(q)))
   FROM (SELECT DISTINCT q FROM unnest($1::text[]) AS q ORDER BY q) AS queues`,
);

const UNREGISTER = statement(
  "unregister_waiter",
  "DELETE FROM {{schema}}.waiters WHERE worker_id = $1",
);

/**
 * Tells inserters of `queues` that this worker sleeps until notified. When this resolves, every
 * job committed from then on either sends a notification or is visible to the next claim.
 */
export async function registerWaiter(
  pool: pg.Pool,
  sql: SchemaSql,
  workerId: string,
  queues: readonly string[],
): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query({ ...sql.bind(REGISTER), values: [queues, workerId] });
    await client.query("BEGIN");
    try {
      await client.query({ ...sql.bind(BARRIER), values: [queues] });
    } finally {
      await client.query("COMMIT");
    }
  } finally {
    client.release();
  }
}

/** Stops notifications for this worker: it is busy and will claim again on its own. */
export async function unregisterWaiter(
  db: Pick<pg.Pool, "query">,
  sql: SchemaSql,
  workerId: string,
): Promise<void> {
  await db.query({ ...sql.bind(UNREGISTER), values: [workerId] });
}
