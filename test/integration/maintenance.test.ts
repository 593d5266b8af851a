import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completeJobs } from "../../src/jobs/complete.ts";
import { failJobs } from "../../src/jobs/fail.ts";
import { type MaintenanceOptions, runMaintenance } from "../../src/jobs/reaper.ts";
import { type Engine, engineFor } from "../fixtures/engine.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const DAY = 24 * 3_600_000;
const options: MaintenanceOptions = {
  reapBatch: 100,
  staleWorkerMs: 60_000,
  retentionMs: 7 * DAY,
  pruneBatch: 10,
};
const MANUAL = { tasks: ["manual"], limit: 1_000 };

describe("maintenance", () => {
  let db: TestDb;
  let engine: Engine;

  beforeAll(async () => {
    db = await createTestDb("maintenance");
    engine = engineFor(db);
  });
  afterAll(async () => {
    await db?.close();
  });

  const count = async (sql: string, values?: unknown[]): Promise<number> =>
    (await db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${sql}`, values))[0]!.n;

  it("prunes old terminal jobs and their events in bounded batches, keeps the rest", async () => {
    // 25 completed, 5 failed (with events), 5 cancelled (with events), 5 still pending.
    const ids = (
      await db.pgwake.enqueueMany(
        Array.from({ length: 35 }, (_, n) => ({ task: "manual", payload: { n }, maxAttempts: 1 })),
      )
    ).map((r) => r.job.id);
    const claimed = await engine.claim("w1", MANUAL);
    expect(claimed).toHaveLength(35);
    const completed = ids.slice(0, 25);
    const failed = ids.slice(25, 30);
    const cancelled = ids.slice(30, 35);
    await completeJobs(
      db.pool,
      engine.sql,
      "w1",
      completed.map((id) => ({ id, attempt: 1, result: null })),
    );
    await failJobs(
      db.pool,
      engine.sql,
      "w1",
      failed.map((id) => ({
        id,
        attempt: 1,
        error: { name: "Error", message: "x" },
        delayMs: 0,
        permanent: false,
      })),
    );
    await db.pgwake.cancel(cancelled);
    const pending = (
      await db.pgwake.enqueueMany(Array.from({ length: 5 }, () => ({ task: "manual" })))
    ).map((r) => r.job.id);

    // Old: 20 of the completed, all failed and cancelled. Recent: 5 completed.
    const old = [...completed.slice(0, 20), ...failed, ...cancelled];
    const recent = completed.slice(20);
    await db.query(
      "UPDATE {{schema}}.jobs SET finished_at = now() - interval '8 days' WHERE id = ANY($1)",
      [old],
    );
    // An old job that is not finished is never pruned, whatever its dates.
    await db.query(
      "UPDATE {{schema}}.jobs SET created_at = now() - interval '30 days' WHERE id = ANY($1)",
      [pending],
    );
    expect(await count("{{schema}}.job_events WHERE job_id = ANY($1)", [old])).toBe(15);

    const passes: number[] = [];
    for (let i = 0; i < 10; i++) {
      const result = await runMaintenance(db.pool, engine.sql, options);
      expect(result.ran).toBe(true);
      passes.push(result.pruned);
      if (result.pruned === 0) break;
    }
    // 30 old jobs, at most 10 per pass.
    expect(passes).toEqual([10, 10, 10, 0]);
    expect(await count("{{schema}}.jobs WHERE id = ANY($1)", [old])).toBe(0);
    expect(await count("{{schema}}.job_events WHERE job_id = ANY($1)", [old])).toBe(0);
    expect(await count("{{schema}}.jobs WHERE id = ANY($1)", [recent])).toBe(5);
    expect(
      await count("{{schema}}.jobs WHERE id = ANY($1) AND status = 'pending'", [pending]),
    ).toBe(5);

    // No retention: nothing is pruned.
    await db.query(
      "UPDATE {{schema}}.jobs SET finished_at = now() - interval '800 days' WHERE id = ANY($1)",
      [recent],
    );
    expect(
      await runMaintenance(db.pool, engine.sql, { ...options, retentionMs: null }),
    ).toMatchObject({ pruned: 0 });
    expect(await count("{{schema}}.jobs WHERE id = ANY($1)", [recent])).toBe(5);
    await db.pgwake.cancel(pending);
  });

  it("a worker prunes with its retentionMs setting", async () => {
    const { job } = await db.pgwake.enqueue("manual", {});
    await engine.claim("w1", MANUAL);
    await completeJobs(db.pool, engine.sql, "w1", [{ id: job.id, attempt: 1, result: null }]);
    await db.query(
      "UPDATE {{schema}}.jobs SET finished_at = now() - interval '2 hours' WHERE id = $1",
      [job.id],
    );
    const keeper = db.pgwake.worker({
      tasks: [{ name: "manual", handler: () => null }],
      retentionMs: 3 * 3_600_000,
    });
    const pruner = db.pgwake.worker({
      tasks: [{ name: "manual", handler: () => null }],
      retentionMs: 3_600_000,
    });
    try {
      expect((await keeper.maintain()).ran).toBe(true);
      expect(await db.pgwake.getJob(job.id)).not.toBeNull();
      expect(await pruner.maintain()).toMatchObject({ ran: true, pruned: expect.any(Number) });
      expect(await db.pgwake.getJob(job.id)).toBeNull();
    } finally {
      await keeper.stop();
      await pruner.stop();
    }
  });

  it("removes stale worker rows and their waiter registrations", async () => {
    await db.query(
      `INSERT INTO {{schema}}.workers (id, host, pid, queues, tasks, concurrency, last_seen_at) VALUES
         ('gone-1', 'h', 1, '{default}', '{manual}', 1, now() - interval '10 minutes'),
         ('gone-2', 'h', 2, '{default}', '{manual}', 1, now() - interval '2 minutes'),
         ('alive',  'h', 3, '{default}', '{manual}', 1, now() - interval '5 seconds')`,
    );
    await db.query(
      "INSERT INTO {{schema}}.waiters (queue, worker_id) VALUES ('default', 'gone-1'), ('default', 'alive')",
    );
    const result = await runMaintenance(db.pool, engine.sql, options);
    expect(result).toMatchObject({ ran: true, staleWorkers: 2 });
    const left = await db.query<{ id: string }>("SELECT id FROM {{schema}}.workers ORDER BY id");
    expect(left.map((r) => r.id)).toEqual(["alive"]);
    const waiting = await db.query<{ worker_id: string }>(
      "SELECT worker_id FROM {{schema}}.waiters",
    );
    expect(waiting.map((r) => r.worker_id)).toEqual(["alive"]);
    await db.query("DELETE FROM {{schema}}.workers; DELETE FROM {{schema}}.waiters");
  });

  it("runs in one process at a time: a held lock makes the other run skip", async () => {
    const { job } = await db.pgwake.enqueue("manual", {});
    await engine.claim("zombie", { ...MANUAL, leaseMs: 1 });
    await waitFor(
      async () =>
        (await count("{{schema}}.jobs WHERE id = $1 AND lease_expires_at < now()", [job.id])) === 1,
      { message: "the lease to expire" },
    );

    // Another process is doing maintenance: it holds the transaction-level advisory lock.
    const other = await db.pool.connect();
    try {
      await other.query("BEGIN");
      const [{ locked }] = (
        await other.query<{ locked: boolean }>(
          "SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext('reaper')) AS locked",
          [db.schema],
        )
      ).rows as [{ locked: boolean }];
      expect(locked).toBe(true);

      const skipped = await Promise.all([
        runMaintenance(db.pool, engine.sql, options),
        runMaintenance(db.pool, engine.sql, options),
      ]);
      expect(skipped).toEqual([
        { ran: false, reaped: 0, staleWorkers: 0, pruned: 0 },
        { ran: false, reaped: 0, staleWorkers: 0, pruned: 0 },
      ]);
      expect((await db.pgwake.getJob(job.id))?.status).toBe("running");
    } finally {
      await other.query("COMMIT");
      other.release();
    }

    // Lock released: exactly one of two concurrent runs reaps the job.
    const [a, b] = await Promise.all([
      runMaintenance(db.pool, engine.sql, options),
      runMaintenance(db.pool, engine.sql, options),
    ]);
    expect(a!.reaped + b!.reaped).toBe(1);
    expect(a!.ran || b!.ran).toBe(true);
    expect(await db.pgwake.getJob(job.id)).toMatchObject({ status: "retrying", attempts: 1 });
    expect(
      await count("{{schema}}.job_events WHERE job_id = $1 AND kind = 'lease_expired'", [job.id]),
    ).toBe(1);
    await db.pgwake.cancel([job.id]);
  });

  it("reaps in bounded batches", async () => {
    const ids = (
      await db.pgwake.enqueueMany(Array.from({ length: 5 }, () => ({ task: "manual" })))
    ).map((r) => r.job.id);
    await engine.claim("zombie", { ...MANUAL, leaseMs: 1 });
    await waitFor(
      async () =>
        (await count("{{schema}}.jobs WHERE id = ANY($1) AND lease_expires_at < now()", [ids])) ===
        5,
      { message: "the leases to expire" },
    );
    const first = await runMaintenance(db.pool, engine.sql, { ...options, reapBatch: 3 });
    expect(first.reaped).toBe(3);
    const second = await runMaintenance(db.pool, engine.sql, { ...options, reapBatch: 3 });
    expect(second.reaped).toBe(2);
    expect(await count("{{schema}}.jobs WHERE id = ANY($1) AND status = 'retrying'", [ids])).toBe(
      5,
    );
  });
});
