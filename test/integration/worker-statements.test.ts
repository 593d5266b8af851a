import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../src/db/pool.ts";
import { SchemaSql } from "../../src/db/sql.ts";
import { type ClaimOptions, claimJobs, SWEEP_PRIORITY } from "../../src/jobs/claim.ts";
import { completeJobs } from "../../src/jobs/complete.ts";
import { registerWorker } from "../../src/jobs/heartbeat.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

/**
 * The worker's statements are planned once per connection (generic plans). A worker that starts
 * on an empty table must not keep a plan made for an empty table: scanning the table whole on
 * every claim costs more with every job it holds.
 */
/** A claim of one queue's lane "t", read from its start. */
const claimOf = (queue: string, limit: number): ClaimOptions => ({
  workerId: "w",
  queue,
  lanes: [{ task: "t", limit, after: { priority: SWEEP_PRIORITY, readySeq: 0 } }],
  limit,
  dueAfter: { runAt: new Date(0), id: 0 },
  promoteLimit: 100,
});

const register = (db: pg.Pool | pg.PoolClient, sql: SchemaSql) =>
  registerWorker(
    db,
    sql,
    { id: "w", host: "h", pid: 1, queues: ["*"], tasks: ["t"], concurrency: 1, listening: false },
    60_000,
  );

describe("worker statement plans", () => {
  let db: TestDb;
  let sql: SchemaSql;

  beforeAll(async () => {
    db = await createTestDb("plans", { unknownTasks: "warn" });
    sql = new SchemaSql(db.schema);
  });
  afterAll(async () => {
    await db?.close();
  });

  /**
   * In a fresh schema (an empty table, never analyzed, as after installing), prepares claim and
   * complete and returns their generic plans: the plans the connection keeps as the table grows.
   */
  async function plansOnEmptyTable(
    configure: (url: string) => pg.Pool,
  ): Promise<Map<string, string>> {
    const fresh = await createTestDb("plans");
    const freshSql = new SchemaSql(fresh.schema);
    const pool = configure(fresh.url);
    const client = await pool.connect();
    try {
      await register(client, freshSql);
      await claimJobs(client, freshSql, claimOf("default", 50));
      await completeJobs(client, freshSql, "w", [{ id: 1, attempt: 1, result: null }]);
      const { rows } = await client.query<{ name: string; params: number }>(
        "SELECT name, cardinality(parameter_types) AS params FROM pg_prepared_statements",
      );
      const plans = new Map<string, string>();
      for (const { name, params } of rows) {
        if (!/claim_jobs|complete_jobs/.test(name)) continue;
        const nulls = Array.from({ length: params }, () => "NULL").join(", ");
        const plan = await client.query<{ "QUERY PLAN": string }>(
          `EXPLAIN EXECUTE ${name}(${nulls})`,
        );
        plans.set(name, plan.rows.map((row) => row["QUERY PLAN"]).join("\n"));
      }
      return plans;
    } finally {
      client.release(true);
      await pool.end();
      await fresh.close();
    }
  }

  it("use indexes even when made on an empty table (the worker's pool)", async () => {
    const plans = await plansOnEmptyTable((url) =>
      createPool({ connectionString: url, max: 1, fixedPlans: true }),
    );
    const names = [...plans.keys()].join(" ");
    expect(names).toMatch(/claim_jobs/);
    expect(names).toMatch(/complete_jobs/);
    for (const [name, plan] of plans) {
      expect(plan, name).not.toMatch(/Seq Scan on jobs/);
      expect(plan, name).toMatch(
        /Index Scan using jobs_pkey on jobs j|Bitmap Index Scan on jobs_pkey/,
      );
    }
  });

  it("would scan the whole table with generic plans alone (why the pool fixes its plans)", async () => {
    const plans = await plansOnEmptyTable((url) => {
      const pool = createPool({ connectionString: url, max: 1 });
      pool.on("connect", (client) => {
        void client.query("SET plan_cache_mode = force_generic_plan");
      });
      return pool;
    });
    const all = [...plans.entries()].map(([name, plan]) => `${name}:\n${plan}`).join("\n");
    expect(all).toMatch(/Seq Scan on jobs/);
  });

  it("a completion's relaxed commit does not outlive its transaction", async () => {
    const pool = createPool({ connectionString: db.url, max: 1, fixedPlans: true });
    try {
      const client = await pool.connect();
      try {
        const [job] = await db.pgwake.enqueueMany([{ task: "t", queue: "relaxed" }]);
        await register(client, sql);
        const [claimed] = (await claimJobs(client, sql, claimOf("relaxed", 1))).claimed.map(
          (c) => c.job,
        );
        expect(claimed?.id).toBe(job!.job.id);
        const done = await completeJobs(client, sql, "w", [
          { id: claimed!.id, attempt: 1, result: { ok: true } },
        ]);
        expect([...done]).toEqual([claimed!.id]);
        // The next claim on this connection must wait for the disk again.
        const { rows } = await client.query<{ setting: string }>(
          "SELECT current_setting('synchronous_commit') AS setting",
        );
        expect(rows[0]!.setting).toBe("on");
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
  });
});
