import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../src/db/pool.ts";
import { SchemaSql } from "../../src/db/sql.ts";
import { claimJobs } from "../../src/jobs/claim.ts";
import { completeJobs } from "../../src/jobs/complete.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

/**
 * The worker's statements are planned once per connection (generic plans). A worker that starts
 * on an empty table must not keep a plan made for an empty table: scanning the table whole on
 * every claim costs more with every job it holds.
 */
describe("worker statement plans", () => {
  let db: TestDb;
  let sql: SchemaSql;

  beforeAll(async () => {
    db = await createTestDb("plans");
    sql = new SchemaSql(db.schema);
  });
  afterAll(async () => {
    await db?.close();
  });

  /** Prepares claim and complete on an empty table, fills it, returns their cached plans. */
  async function plansAfterGrowth(pool: pg.Pool): Promise<Map<string, string>> {
    const client = await pool.connect();
    try {
      await client.query(`TRUNCATE ${JSON.stringify(db.schema)}.jobs`);
      const options = {
        queues: ["default"],
        tasks: ["t"],
        limit: 50,
        workerId: "w",
        leaseMs: 1_000,
      };
      await claimJobs(client, sql, options);
      await completeJobs(client, sql, "w", [{ id: 1, attempt: 1, result: null }]);
      await db.pgwake.enqueueMany(Array.from({ length: 5_000 }, () => ({ task: "t" })));
      const { rows } = await client.query<{ name: string; params: number }>(
        "SELECT name, cardinality(parameter_types) AS params FROM pg_prepared_statements",
      );
      const plans = new Map<string, string>();
      for (const { name, params } of rows) {
        const nulls = Array.from({ length: params }, () => "NULL").join(", ");
        const plan = await client.query<{ "QUERY PLAN": string }>(
          `EXPLAIN EXECUTE ${name}(${nulls})`,
        );
        plans.set(name, plan.rows.map((row) => row["QUERY PLAN"]).join("\n"));
      }
      return plans;
    } finally {
      client.release(true);
    }
  }

  it("use indexes once the table has grown (the worker's pool)", async () => {
    const pool = createPool({ connectionString: db.url, max: 1, fixedPlans: true });
    try {
      const plans = await plansAfterGrowth(pool);
      const names = [...plans.keys()].join(" ");
      expect(names).toMatch(/claim_jobs/);
      expect(names).toMatch(/complete_jobs/);
      for (const [name, plan] of plans) {
        expect(plan, name).not.toMatch(/Seq Scan on jobs/);
        expect(plan, name).toMatch(
          /Index Scan using jobs_pkey on jobs j|Bitmap Index Scan on jobs_pkey/,
        );
      }
    } finally {
      await pool.end();
    }
  });

  it("would scan the whole table with generic plans alone (why the pool fixes its plans)", async () => {
    const pool = createPool({ connectionString: db.url, max: 1 });
    pool.on("connect", (client) => {
      void client.query("SET plan_cache_mode = force_generic_plan");
    });
    try {
      const plans = await plansAfterGrowth(pool);
      expect([...plans.values()].some((plan) => /Seq Scan on jobs/.test(plan))).toBe(true);
    } finally {
      await pool.end();
    }
  });

  it("a completion's relaxed commit does not outlive its transaction", async () => {
    const pool = createPool({ connectionString: db.url, max: 1, fixedPlans: true });
    try {
      const client = await pool.connect();
      try {
        const [job] = await db.pgwake.enqueueMany([{ task: "t", queue: "relaxed" }]);
        const options = {
          queues: ["relaxed"],
          tasks: ["t"],
          limit: 1,
          workerId: "w",
          leaseMs: 60_000,
        };
        const [claimed] = await claimJobs(client, sql, options);
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
