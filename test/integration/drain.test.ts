import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const JOBS = 10_000;
const WORKERS = 4;

/** Handler invocations per job id, across every worker of this process. */
const runs = new Map<number, number>();
const count = defineTask({
  name: "count",
  handler: (_payload, ctx) => {
    runs.set(ctx.job.id, (runs.get(ctx.job.id) ?? 0) + 1);
    return null;
  },
});

describe(`${WORKERS} workers draining ${JOBS} jobs`, () => {
  let db: TestDb;
  const workers: Worker[] = [];

  beforeAll(async () => {
    db = await createTestDb("drain", { tasks: [count] });
  });
  afterAll(async () => {
    await Promise.allSettled(workers.map((w) => w.stop({ graceMs: 5_000 })));
    await db?.close();
  });

  it("completes every job exactly once", { timeout: 150_000 }, async () => {
    // Separate Worker objects, each with its own pool and LISTEN connection.
    for (let i = 0; i < WORKERS; i++) {
      const worker = db.pgwake.worker({
        workerId: `drain-${i}`,
        concurrency: 10,
        pollIntervalMs: 1_000,
        maintenanceIntervalMs: 1_000,
      });
      workers.push(worker);
      await worker.start();
    }
    await waitFor(() => workers.every((w) => w.listening), { message: "all listeners" });

    const started = performance.now();
    // Enqueued while the workers run, in batches, so claims race with inserts.
    for (let offset = 0; offset < JOBS; offset += 1_000) {
      const batch = Array.from({ length: 1_000 }, (_, i) => ({
        task: "count",
        payload: { n: offset + i },
      }));
      const results = await db.pgwake.enqueueMany(batch);
      expect(results.every((r) => !r.duplicate)).toBe(true);
    }
    await waitFor(
      async () => {
        const [row] = await db.query<{ n: number }>(
          "SELECT count(*)::integer AS n FROM {{schema}}.all_jobs WHERE status = 'completed'",
        );
        return row!.n === JOBS;
      },
      { timeoutMs: 90_000, intervalMs: 100, message: `${JOBS} completed jobs` },
    );
    const seconds = (performance.now() - started) / 1_000;
    console.log(
      `drained ${JOBS} jobs with ${WORKERS} workers in ${seconds.toFixed(2)} s (${Math.round(JOBS / seconds)} jobs/s); per worker: ${workers.map((w) => w.stats.completed).join(", ")}`,
    );

    // In memory: every job ran once, no job ran twice.
    expect(runs.size).toBe(JOBS);
    const twice = [...runs].filter(([, n]) => n !== 1);
    expect(twice).toEqual([]);

    // In the database: all completed, on their first attempt, nothing reaped or ignored.
    const [summary] = await db.query<{ total: number; completed: number; first: number }>(
      `SELECT count(*)::integer AS total,
              count(*) FILTER (WHERE status = 'completed')::integer AS completed,
              count(*) FILTER (WHERE attempts = 1)::integer AS first
       FROM {{schema}}.all_jobs`,
    );
    expect(summary).toEqual({ total: JOBS, completed: JOBS, first: JOBS });
    const ids = await db.query<{ id: number }>("SELECT id FROM {{schema}}.all_jobs");
    expect(new Set(ids.map((r) => r.id))).toEqual(new Set(runs.keys()));
    const [events] = await db.query<{ n: number }>(
      "SELECT count(*)::integer AS n FROM {{schema}}.job_events",
    );
    expect(events!.n).toBe(0);

    const completed = workers.map((w) => w.stats.completed);
    expect(completed.reduce((a, b) => a + b, 0)).toBe(JOBS);
    // Every worker took part.
    for (const n of completed) expect(n).toBeGreaterThan(0);
  });
});
