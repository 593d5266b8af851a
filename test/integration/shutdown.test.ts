import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask, PgwakeError, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { deferred, waitFor } from "../helpers/wait.ts";

const running = new Set<number>();
const finishShort = deferred();
const short = defineTask({
  name: "short",
  handler: async (_payload, ctx) => {
    running.add(ctx.job.id);
    await finishShort.promise;
    return { finished: ctx.job.id };
  },
});
const signals = new Map<number, AbortSignal>();
const long = defineTask({
  name: "long",
  handler: (_payload, ctx) => {
    running.add(ctx.job.id);
    signals.set(ctx.job.id, ctx.signal);
    // Stops only when told to (and then pretends it succeeded: that must not count).
    return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve("aborted")));
  },
});

describe("graceful shutdown", () => {
  let db: TestDb;
  let worker: Worker | undefined;

  beforeAll(async () => {
    db = await createTestDb("shutdown", { tasks: [short, long] });
  });
  afterAll(async () => {
    finishShort.resolve();
    await worker?.stop({ graceMs: 100 });
    await db?.close();
  });

  it("finishes short jobs, returns long ones and flushes every outcome", {
    timeout: 60_000,
  }, async () => {
    const shorts = (await db.pgwake.enqueueMany([{ task: "short" }, { task: "short" }])).map(
      (r) => r.job.id,
    );
    const [longJob] = (await db.pgwake.enqueueMany([{ task: "long" }])).map((r) => r.job.id);
    // A long job already on its second attempt gets that attempt back, not a fresh budget.
    const { job: retried } = await db.pgwake.enqueue("long", {});
    await db.query("UPDATE {{schema}}.jobs SET attempts = 1, status = 'retrying' WHERE id = $1", [
      retried.id,
    ]);

    worker = db.pgwake.worker({
      concurrency: 8,
      pollIntervalMs: 200,
      maintenanceIntervalMs: 0,
      // Outcomes wait long in the batch: only the shutdown flush can write them in time.
      flushDelayMs: 60_000,
    });
    await worker.start();
    const all = [...shorts, longJob!, retried.id];
    await waitFor(() => all.every((id) => running.has(id)), { message: "every job to start" });

    const stopped = worker.stop({ graceMs: 1_500 });
    // Stopping does not abort anybody yet; the short jobs finish within the grace period.
    expect([...signals.values()].some((s) => s.aborted)).toBe(false);
    finishShort.resolve();
    await stopped;

    for (const id of shorts) {
      expect(await db.pgwake.getJob(id)).toMatchObject({
        status: "completed",
        attempts: 1,
        result: { finished: id },
      });
    }

    // The long jobs outlived the grace period: aborted with SHUTDOWN and handed back.
    for (const id of [longJob!, retried.id]) {
      const signal = signals.get(id)!;
      expect(signal.aborted).toBe(true);
      expect(signal.reason).toBeInstanceOf(PgwakeError);
      expect((signal.reason as PgwakeError).code).toBe("SHUTDOWN");
    }
    expect(await db.pgwake.getJob(longJob!)).toMatchObject({
      status: "pending",
      attempts: 0,
      result: null,
    });
    // Handed back jobs are ready at once, in their old place (`pending`, not `retrying`).
    expect(await db.pgwake.getJob(retried.id)).toMatchObject({
      status: "pending",
      attempts: 1,
      result: null,
    });
    const events = await db.query<{
      job_id: number;
      kind: string;
      attempt: number;
      worker_id: string;
    }>("SELECT job_id, kind, attempt, worker_id FROM {{schema}}.job_events ORDER BY id");
    expect(events).toEqual(
      expect.arrayContaining([
        { job_id: longJob, kind: "returned", attempt: 1, worker_id: worker.id },
        { job_id: retried.id, kind: "returned", attempt: 2, worker_id: worker.id },
      ]),
    );
    expect(events).toHaveLength(2);

    // The worker unregistered itself.
    expect(await db.query("SELECT 1 FROM {{schema}}.workers WHERE id = $1", [worker.id])).toEqual(
      [],
    );
    expect(
      await db.query("SELECT 1 FROM {{schema}}.waiters WHERE worker_id = $1", [worker.id]),
    ).toEqual([]);
    // Stopping twice is the same stop.
    await worker.stop();

    // The returned jobs run again on the next worker, on the attempt they were on.
    const quickLong = defineTask({ name: "long", handler: () => "second run" });
    const next = db.pgwake.worker({
      tasks: [quickLong],
      pollIntervalMs: 200,
      maintenanceIntervalMs: 0,
    });
    try {
      await next.start();
      for (const [id, attempts] of [
        [longJob!, 1],
        [retried.id, 2],
      ] as const) {
        const done = await waitFor(
          async () => {
            const j = await db.pgwake.getJob(id);
            return j?.status === "completed" ? j : null;
          },
          { message: `returned job ${id} to run again` },
        );
        expect(done).toMatchObject({ attempts, result: "second run", leaseOwner: next.id });
      }
    } finally {
      await next.stop();
    }
  });

  it("stopping a worker that never started just closes it", async () => {
    const idle = db.pgwake.worker({ maintenanceIntervalMs: 0 });
    await idle.stop();
    await expect(idle.start()).rejects.toBeInstanceOf(PgwakeError);
  });
});
