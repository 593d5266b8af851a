import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SubmissionCoalescer } from "../../src/api/coalescer.ts";
import type { NewJob } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

describe("submission coalescer", () => {
  let db: TestDb;
  /** The jobs of each enqueueMany statement the coalescer sent. */
  const statements: number[] = [];

  beforeAll(async () => {
    db = await createTestDb("coalescer");
    const enqueueMany = db.pgwake.enqueueMany.bind(db.pgwake);
    db.pgwake.enqueueMany = (jobs: readonly NewJob[], ...rest) => {
      statements.push(jobs.length);
      return enqueueMany(jobs, ...rest);
    };
  });
  afterAll(async () => {
    await db?.close();
  });

  it("sends submissions of one event-loop turn as one statement, each answered with its own row", async () => {
    const coalescer = new SubmissionCoalescer(db.pgwake, { maxInFlight: 2, maxBatch: 500 });
    statements.length = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        coalescer.submit({ task: "t", payload: { i }, idempotencyKey: `k${i % 10}` }, "default"),
      ),
    );
    expect(statements).toEqual([20]);
    for (const [i, result] of results.entries()) {
      expect(result.job.payload).toEqual({ i: i % 10 });
      expect(result.duplicate).toBe(i >= 10);
    }
    const rows = await db.query("SELECT id FROM {{schema}}.jobs");
    expect(rows).toHaveLength(10);
  });

  it("holds later submissions while the limit of statements is in flight, then sends them together", async () => {
    const coalescer = new SubmissionCoalescer(db.pgwake, { maxInFlight: 1, maxBatch: 500 });
    statements.length = 0;
    const first = coalescer.submit({ task: "t" }, "default");
    // The first statement is on its way after this turn; these wait for it.
    await new Promise((resolve) => setImmediate(resolve));
    const later = Array.from({ length: 5 }, () => coalescer.submit({ task: "t" }, "default"));
    await Promise.all([first, ...later]);
    expect(statements).toEqual([1, 5]);
  });
});
