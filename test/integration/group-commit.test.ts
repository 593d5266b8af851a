import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SchemaSql } from "../../src/db/sql.ts";
import { Pgwake } from "../../src/index.ts";
import { SubmissionCoalescer } from "../../src/jobs/coalescer.ts";
import { type EnqueuedJob, insertJobs, type NewJob } from "../../src/jobs/enqueue.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

describe("group commit of single submissions", () => {
  let db: TestDb;
  let sql: SchemaSql;
  /** The jobs of each insert statement sent. */
  const statements: number[] = [];
  const insert = (jobs: NewJob[]): Promise<EnqueuedJob[]> => {
    statements.push(jobs.length);
    return insertJobs(db.pool, sql, jobs);
  };

  beforeAll(async () => {
    db = await createTestDb("group_commit");
    sql = new SchemaSql(db.schema);
  });
  afterAll(async () => {
    await db?.close();
  });

  it("sends submissions of one event-loop turn as one statement, each answered with its own row", async () => {
    const coalescer = new SubmissionCoalescer(insert, { maxInFlight: 2, maxBatch: 500 });
    statements.length = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        coalescer.submit({ task: "t", payload: { i }, idempotencyKey: `k${i % 10}` }),
      ),
    );
    expect(statements).toEqual([20]);
    for (const [i, result] of results.entries()) {
      expect(result.job.payload).toEqual({ i: i % 10 });
      expect(result.duplicate).toBe(i >= 10);
    }
    const rows = await db.query("SELECT id FROM {{schema}}.jobs WHERE task = 't'");
    expect(rows).toHaveLength(10);
  });

  it("holds later submissions while the limit of statements is in flight, then sends them together", async () => {
    const coalescer = new SubmissionCoalescer(insert, { maxInFlight: 1, maxBatch: 500 });
    statements.length = 0;
    const first = coalescer.submit({ task: "t2" });
    // The first statement is on its way after this turn; these wait for it.
    await new Promise((resolve) => setImmediate(resolve));
    const later = Array.from({ length: 5 }, () => coalescer.submit({ task: "t2" }));
    await Promise.all([first, ...later]);
    expect(statements).toEqual([1, 5]);
  });

  it("fails only the job the database refuses; its neighbours are inserted", async () => {
    const coalescer = new SubmissionCoalescer(insert, { maxInFlight: 1, maxBatch: 500 });
    statements.length = 0;
    const outcomes = await Promise.allSettled([
      coalescer.submit({ task: "t3" }),
      coalescer.submit({ task: "t3", priority: 5_000 }), // the priority check refuses it
      coalescer.submit({ task: "t3" }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(statements).toEqual([3, 1, 1, 1]);
    expect(await db.query("SELECT id FROM {{schema}}.jobs WHERE task = 't3'")).toHaveLength(2);
  });

  it("Pgwake.enqueue shares statements between concurrent calls", async () => {
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => db.pgwake.enqueue("t4", { i })),
    );
    const ids = results.map((r) => r.job.id);
    expect(new Set(ids).size).toBe(30);
    // One statement: every row carries the same inserting transaction.
    const rows = await db.query<{ xids: string }>(
      "SELECT count(DISTINCT xmin::text)::text AS xids FROM {{schema}}.jobs WHERE task = 't4'",
    );
    expect(rows[0]!.xids).toBe("1");
  });

  it("close() waits for submissions under way, and refuses new ones", async () => {
    const pgwake = new Pgwake({ connectionString: db.url, schema: db.schema });
    const pending = Array.from({ length: 10 }, (_, i) => pgwake.enqueue("t5", { i }));
    await pgwake.close();
    const results = await Promise.allSettled(pending);
    expect(results.map((r) => r.status)).toEqual(Array(10).fill("fulfilled"));
    expect(await db.query("SELECT id FROM {{schema}}.jobs WHERE task = 't5'")).toHaveLength(10);
    await expect(pgwake.enqueue("t5", {})).rejects.toMatchObject({ code: "DATABASE_UNAVAILABLE" });
  });
});
