import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completeJobs } from "../../src/jobs/complete.ts";
import { failJobs } from "../../src/jobs/fail.ts";
import {
  cleanWaiters,
  reapExpiredWorkers,
  releaseKeys,
  rotateHistory,
} from "../../src/jobs/maintenance.ts";
import { addMinuteCounts, compactMinuteCounts } from "../../src/jobs/stats.ts";
import { type Engine, engineFor } from "../fixtures/engine.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

const MANUAL = { tasks: ["manual"], limit: 1_000 };
const RETENTION_MS = 10_000;

describe("maintenance", () => {
  let db: TestDb;
  let engine: Engine;

  beforeAll(async () => {
    db = await createTestDb("maintenance", { unknownTasks: "warn" });
    engine = engineFor(db);
  });
  afterAll(async () => {
    await db?.close();
  });

  const count = async (sql: string, values?: unknown[]): Promise<number> =>
    (await db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${sql}`, values))[0]!.n;
  /** Time passes for the history ring: its epoch moves back (rows written so far grow older). */
  const age = (ms: number) =>
    db.query(
      "UPDATE {{schema}}.settings SET history_epoch = history_epoch - $1 * interval '1 millisecond'",
      [ms],
    );

  /** Finishes `n` new jobs: completed, failed (with events) and cancelled (with events). */
  const finishJobs = async (n: number): Promise<number[]> => {
    const ids = (
      await db.pgwake.enqueueMany(
        Array.from({ length: n * 3 }, (_, i) => ({
          task: "manual",
          payload: { i },
          maxAttempts: 1,
        })),
      )
    ).map((r) => r.job.id);
    await engine.claim("w1", { ...MANUAL, limit: n * 2 });
    await completeJobs(
      db.pool,
      engine.sql,
      "w1",
      ids.slice(0, n).map((id) => ({ id, attempt: 1, result: null })),
    );
    await failJobs(
      db.pool,
      engine.sql,
      "w1",
      ids.slice(n, 2 * n).map((id) => ({
        id,
        attempt: 1,
        error: { name: "Error", message: "x" },
        delayMs: 0,
        permanent: false,
      })),
    );
    await db.pgwake.cancel(ids.slice(2 * n));
    return ids;
  };

  it("drops history and events a slot at a time once older than the retention", async () => {
    // The first rotation sets the slot width from the retention (width = retention / 5) and
    // protects what was written under the old width for one retention period.
    expect(await rotateHistory(db.pool, engine.sql, RETENTION_MS)).toEqual({
      emptied: 0,
      slotMs: RETENTION_MS / 5,
    });
    expect(await rotateHistory(db.pool, engine.sql, RETENTION_MS)).toMatchObject({ emptied: 0 });
    await db.query("UPDATE {{schema}}.settings SET history_protect_until = '-infinity'");

    const old = await finishJobs(5);
    expect(await count("{{schema}}.job_history WHERE id = ANY($1)", [old])).toBe(15);
    expect(await count("{{schema}}.job_events WHERE job_id = ANY($1)", [old])).toBe(15);
    const live = (await db.pgwake.enqueue("manual", {}, { delayMs: 3_600_000 })).job.id;

    // Half a retention later nothing goes.
    await age(RETENTION_MS / 2);
    expect(await rotateHistory(db.pool, engine.sql, RETENTION_MS)).toMatchObject({ emptied: 0 });
    expect(await count("{{schema}}.job_history WHERE id = ANY($1)", [old])).toBe(15);

    const recent = await finishJobs(2);
    // One retention and a slot later, the old slot is dropped whole; the recent rows stay.
    await age(RETENTION_MS / 2 + (2 * RETENTION_MS) / 5);
    const rotated = await rotateHistory(db.pool, engine.sql, RETENTION_MS);
    expect(rotated.emptied).toBeGreaterThanOrEqual(1);
    expect(await count("{{schema}}.job_history WHERE id = ANY($1)", [old])).toBe(0);
    expect(await count("{{schema}}.job_events WHERE job_id = ANY($1)", [old])).toBe(0);
    expect(await count("{{schema}}.job_history WHERE id = ANY($1)", [recent])).toBe(6);
    expect(await db.pgwake.getJob(live)).toMatchObject({ status: "scheduled" });
    // An emptied slot is not emptied again.
    expect(await rotateHistory(db.pool, engine.sql, RETENTION_MS)).toMatchObject({ emptied: 0 });
  });

  it("a slot somebody reads is dropped on a later pass, never waited for", async () => {
    const SLOT = RETENTION_MS / 5;
    const ids = await finishJobs(2);
    const [{ slot }] = (await db.query<{ slot: number }>(
      "SELECT slot FROM {{schema}}.job_history WHERE id = $1",
      [ids[0]],
    )) as [{ slot: number }];
    // Time passes a slot at a time with maintenance on every step, as in a worker, while a
    // reader holds that slot: every attempt gives up within its 100 ms lock timeout.
    const reader = await db.pool.connect();
    try {
      await reader.query("BEGIN");
      await reader.query(`SELECT count(*) FROM "${db.schema}".job_history_${slot}`);
      for (let step = 0; step < 8; step++) {
        await age(SLOT);
        const started = performance.now();
        await rotateHistory(db.pool, engine.sql, RETENTION_MS);
        expect(performance.now() - started).toBeLessThan(5_000);
      }
      expect(await count("{{schema}}.job_history WHERE id = ANY($1)", [ids])).toBe(6);
    } finally {
      await reader.query("COMMIT");
      reader.release();
    }
    // Once free, the slot goes within one more turn of the ring.
    let steps = 0;
    while ((await count("{{schema}}.job_history WHERE id = ANY($1)", [ids])) > 0 && steps < 8) {
      await age(SLOT);
      await rotateHistory(db.pool, engine.sql, RETENTION_MS);
      steps++;
    }
    expect(await count("{{schema}}.job_history WHERE id = ANY($1)", [ids])).toBe(0);
  });

  it("keeps everything without a retention, and protects old rows after the width changes", async () => {
    expect(await rotateHistory(db.pool, engine.sql, null)).toEqual({ emptied: 0, slotMs: null });
    const ids = await finishJobs(1);
    await age(3_600_000);
    expect(await rotateHistory(db.pool, engine.sql, null)).toMatchObject({ emptied: 0 });
    expect(await count("{{schema}}.job_history WHERE id = ANY($1)", [ids])).toBe(3);
    // A retention again: rows written under the old width wait one retention period.
    await rotateHistory(db.pool, engine.sql, RETENTION_MS);
    await age(10 * RETENTION_MS);
    expect(await rotateHistory(db.pool, engine.sql, RETENTION_MS)).toMatchObject({ emptied: 0 });
    expect(await count("{{schema}}.job_history WHERE id = ANY($1)", [ids])).toBe(3);
  });

  it("reaps the jobs of a worker whose lease ran out, once, and forgets the worker", async () => {
    const ids = (
      await db.pgwake.enqueueMany([
        { task: "manual", maxAttempts: 3 },
        { task: "manual", maxAttempts: 1 },
      ])
    ).map((r) => r.job.id);
    expect(await engine.claim("zombie", MANUAL)).toHaveLength(2);
    await db.query(
      "INSERT INTO {{schema}}.waiters (queue, worker_id) VALUES ('default', 'zombie')",
    );
    // Alive: nothing happens.
    expect(await reapExpiredWorkers(db.pool, engine.sql)).toEqual({
      expiredWorkers: 0,
      reaped: 0,
    });
    await engine.expireLease("zombie");

    // Another process is reaping: it holds the lock, this pass does nothing.
    const other = await db.pool.connect();
    try {
      await other.query("BEGIN");
      await other.query("SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext('reap'))", [
        db.schema,
      ]);
      expect(await reapExpiredWorkers(db.pool, engine.sql)).toEqual({
        expiredWorkers: 0,
        reaped: 0,
      });
    } finally {
      await other.query("COMMIT");
      other.release();
    }

    const [a, b] = await Promise.all([
      reapExpiredWorkers(db.pool, engine.sql),
      reapExpiredWorkers(db.pool, engine.sql),
    ]);
    expect(a!.reaped + b!.reaped).toBe(2);
    expect(await db.pgwake.getJob(ids[0]!)).toMatchObject({ status: "pending", attempts: 1 });
    expect(await db.pgwake.getJob(ids[1]!)).toMatchObject({ status: "failed", attempts: 1 });
    expect(
      await count("{{schema}}.job_events WHERE job_id = ANY($1) AND kind = 'lease_expired'", [ids]),
    ).toBe(2);
    expect(await count("{{schema}}.workers WHERE id = 'zombie'")).toBe(0);
    expect(await count("{{schema}}.waiters WHERE worker_id = 'zombie'")).toBe(0);
    const [minute] = await db.query<{ failed: number; retried: number }>(
      "SELECT sum(failed)::int AS failed, sum(retried)::int AS retried FROM {{schema}}.queue_minutes",
    );
    expect(minute).toMatchObject({ retried: expect.any(Number), failed: expect.any(Number) });
    await db.pgwake.cancel(ids);
  });

  it("the orphan sweep takes running jobs whose worker has no row at all", async () => {
    const { job } = await db.pgwake.enqueue("manual", {});
    await engine.claim("vanished", MANUAL);
    await db.query("DELETE FROM {{schema}}.workers WHERE id = 'vanished'");
    expect(await reapExpiredWorkers(db.pool, engine.sql)).toMatchObject({ reaped: 0 });
    expect(await reapExpiredWorkers(db.pool, engine.sql, { orphans: true })).toMatchObject({
      reaped: 1,
    });
    expect(await db.pgwake.getJob(job.id)).toMatchObject({ status: "pending" });
    await db.pgwake.cancel([job.id]);
  });

  it("removes tokens nobody acts on and lowers the flag", async () => {
    await db.query(
      `INSERT INTO {{schema}}.workers (id, host, pid, queues, tasks, concurrency, lease_expires_at)
       VALUES ('alive', 'h', 1, '{default}', '{manual}', 1, now() + interval '1 hour')`,
    );
    await db.query(
      `INSERT INTO {{schema}}.waiters (queue, worker_id, listener_pid) VALUES
         ('default', 'no-such-worker', NULL), ('default', 'alive', 2147483000), ('other', 'alive', pg_backend_pid())`,
    );
    await db.query("SELECT setval($1, 1)", [`"${db.schema}".waiting`]);
    expect(await cleanWaiters(db.pool, engine.sql)).toBe(2);
    const left = await db.query<{ queue: string }>("SELECT queue FROM {{schema}}.waiters");
    expect(left).toEqual([{ queue: "other" }]);
    await db.query("DELETE FROM {{schema}}.waiters");
    await cleanWaiters(db.pool, engine.sql);
    const [{ flag }] = (await db.query<{ flag: string }>(
      `SELECT pg_sequence_last_value('"${db.schema}".waiting'::regclass)::text AS flag`,
    )) as [{ flag: string }];
    expect(flag).toBe("0");
    await db.query("DELETE FROM {{schema}}.workers WHERE id = 'alive'");
  });

  it("releases idempotency keys past the retention whose job is gone", async () => {
    const { job: done } = await db.pgwake.enqueue("manual", {}, { idempotencyKey: "k-done" });
    const { job: waiting } = await db.pgwake.enqueue("manual", {}, { idempotencyKey: "k-live" });
    await engine.claim("w1", { ...MANUAL, limit: 1 });
    await completeJobs(db.pool, engine.sql, "w1", [{ id: done.id, attempt: 1, result: null }]);
    await db.query("UPDATE {{schema}}.job_keys SET created_at = now() - interval '1 hour'");
    const { released } = await releaseKeys(db.pool, engine.sql, {
      retentionMs: 60_000,
      after: new Date(0),
      limit: 100,
    });
    expect(released).toBe(1);
    // The released key makes a new job; the live job's key still returns it.
    const again = await db.pgwake.enqueue("manual", {}, { idempotencyKey: "k-done" });
    expect(again.duplicate).toBe(false);
    const dup = await db.pgwake.enqueue("manual", {}, { idempotencyKey: "k-live" });
    expect(dup).toMatchObject({ duplicate: true, job: { id: waiting.id } });
    await db.pgwake.cancel([again.job.id, waiting.id]);
  });

  it("folds the per-minute counts of hours past into one row an hour, keeping every count", async () => {
    const [{ now }] = (await db.query<{ now: Date }>("SELECT now() AS now")) as [{ now: Date }];
    const hour = 3_600_000;
    const startOfHour = (t: number) => Math.floor(t / hour) * hour;
    const old = startOfHour(now.getTime()) - 3 * hour; // an hour long past
    const recent = now.getTime() - 5 * 60_000; // this hour's minutes stay
    const counts = [
      ...[0, 1, 17, 59].map((m) => ({
        minute: new Date(old + m * 60_000),
        completed: 2,
        failed: 1,
      })),
      ...[0, 30].map((m) => ({
        minute: new Date(old + hour + m * 60_000),
        completed: 5,
        failed: 0,
      })),
      { minute: new Date(recent), completed: 7, failed: 0 },
    ].map((c) => ({ queue: "folded", cancelled: 0, retried: 1, runMs: 10, waitMs: 3, ...c }));
    await addMinuteCounts(db.pool, engine.sql, counts);
    const totals = () =>
      db.query<{
        rows: number;
        completed: number;
        failed: number;
        retried: number;
        run_ms: number;
      }>(
        `SELECT count(*)::integer AS rows, sum(completed)::integer AS completed,
                sum(failed)::integer AS failed, sum(retried)::integer AS retried,
                sum(run_ms)::integer AS run_ms
         FROM {{schema}}.queue_minutes WHERE queue = 'folded'`,
      );
    expect((await totals())[0]).toEqual({
      rows: 7,
      completed: 25,
      failed: 4,
      retried: 7,
      run_ms: 70,
    });
    // Batches of 2: it goes on until nothing is left to fold.
    let folded = 0;
    for (let n = await compactMinuteCounts(db.pool, engine.sql, 2); n > 0; ) {
      folded += n;
      n = await compactMinuteCounts(db.pool, engine.sql, 2);
    }
    expect(folded).toBe(4); // 1, 17, 59 of the first hour; 30 of the second
    expect((await totals())[0]).toEqual({
      rows: 3,
      completed: 25,
      failed: 4,
      retried: 7,
      run_ms: 70,
    });
    const rows = await db.query<{ minute: Date; completed: number }>(
      "SELECT minute, completed::integer FROM {{schema}}.queue_minutes WHERE queue = 'folded' ORDER BY minute",
    );
    expect(rows.map((r) => [r.minute.getTime(), r.completed])).toEqual([
      [old, 8],
      [old + hour, 10],
      [Math.floor(recent / 60_000) * 60_000, 7],
    ]);
  });

  it("a worker's maintenance runs every service and reports what each did", async () => {
    const worker = db.pgwake.worker({
      tasks: [{ name: "manual", handler: () => null }],
      retentionMs: RETENTION_MS,
    });
    try {
      const result = await worker.maintain();
      expect(Object.keys(result).sort()).toEqual([
        "flow",
        "history",
        "keys",
        "minutes",
        "reaper",
        "schedule-runs",
        "waiters",
      ]);
    } finally {
      await worker.stop();
    }
  });
});
