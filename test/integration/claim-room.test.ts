/**
 * A worker stops claiming while its outcomes pile up beyond a batch (their jobs hold leases too:
 * when the database is slower than the handlers, it claims less until they are written). Once
 * they are written it must claim again at once, not at its next poll. Found by the drain bench:
 * some 50,000-job drains stalled for one poll interval (1.5–2.5 s, no job started) when every
 * handler had finished while the last outcomes were still being written — nothing asked the
 * claim scheduler to look again after the write.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { defineTask } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const quick = defineTask({ name: "room.quick", handler: () => {} });

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb("claim_room", { tasks: [quick] });
});

afterAll(async () => {
  await db?.close();
});

test("claims again as soon as outcomes that held it back are written", async () => {
  const JOBS = 60;
  await db.pgwake.enqueueMany(
    Array.from({ length: JOBS }, (_, n) => ({ task: "room.quick", payload: { n } })),
  );
  const worker = db.pgwake.worker({
    concurrency: 4,
    bufferMs: 0,
    flushBatchSize: 2,
    // A stall shows as a wait for this poll.
    pollIntervalMs: 60_000,
    maintenanceIntervalMs: 0,
  });
  // Completions move jobs into job_history: while this lock is held they wait, and the outcomes
  // of the handlers that keep finishing pile up.
  const blocker = await db.pool.connect();
  try {
    await blocker.query("BEGIN");
    await blocker.query(`LOCK TABLE "${db.schema}".job_history IN EXCLUSIVE MODE`);
    await worker.start();
    // Held back: some handlers ran, and the worker stopped claiming with jobs left.
    await waitFor(
      async () =>
        (
          await db.query<{ n: number }>(
            "SELECT count(*)::integer AS n FROM {{schema}}.jobs WHERE status = 'running'",
          )
        )[0]!.n >= 6,
      { timeoutMs: 10_000, message: "outcomes to pile up behind the lock" },
    );
    const left = (
      await db.query<{ n: number }>(
        "SELECT count(*)::integer AS n FROM {{schema}}.jobs WHERE status = 'pending'",
      )
    )[0]!.n;
    expect(left).toBeGreaterThan(0);
    await blocker.query("COMMIT");
    // Every job completes well before the 60 s poll.
    await waitFor(
      async () =>
        (
          await db.query<{ n: number }>(
            "SELECT count(*)::integer AS n FROM {{schema}}.all_jobs WHERE status = 'completed'",
          )
        )[0]!.n === JOBS,
      { timeoutMs: 5_000, message: "every job to complete after the lock went" },
    );
  } finally {
    await blocker.query("ROLLBACK").catch(() => {});
    blocker.release();
    await worker.stop({ graceMs: 1_000 });
  }
});
