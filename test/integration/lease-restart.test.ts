/**
 * A worker that learns it was reaped (its lease ran out: a long pause, a partition) starts over
 * under a new id and must go on running jobs to the end. Found by the fault suite's "blocks the
 * event loop longer than the lease": after starting over, the worker dropped the outcomes of the
 * jobs it no longer held by closing its outcome writer for good, so every job it ran afterwards
 * stayed `running` under its live lease, never completed and never reaped.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { defineTask, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const echo = defineTask({ name: "restart.echo", handler: (payload: unknown) => payload });

let db: TestDb;
let worker: Worker;

beforeAll(async () => {
  db = await createTestDb("lease_restart", { tasks: [echo] });
  worker = db.pgwake.worker({
    leaseMs: 2_000,
    heartbeatMs: 200,
    pollIntervalMs: 200,
    // No reaper here: the test plays it.
    maintenanceIntervalMs: 0,
  });
  await worker.start();
});

afterAll(async () => {
  await worker?.stop({ graceMs: 500 });
  await db?.close();
});

const statusOf = async (id: number) => (await db.pgwake.getJob(id))?.status;

test("a worker reaped while alive starts over and completes the jobs it claims afterwards", async () => {
  const before = await db.pgwake.enqueue("restart.echo", { n: 0 });
  await waitFor(async () => (await statusOf(before.job.id)) === "completed", {
    message: "the first job to complete",
  });

  // The reaper's verdict on a worker that stopped heartbeating, as maintenance writes it.
  const firstId = worker.id;
  await db.query("UPDATE {{schema}}.workers SET reaped_at = now() WHERE id = $1", [firstId]);
  await waitFor(() => worker.id !== firstId && worker.leaseLive, {
    timeoutMs: 10_000,
    message: "the worker to start over under a new id",
  });

  const after = await db.pgwake.enqueueMany(
    Array.from({ length: 20 }, (_, n) => ({ task: "restart.echo", payload: { n } })),
  );
  const ids = after.map((r) => r.job.id);
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          "SELECT count(*)::integer AS n FROM {{schema}}.all_jobs WHERE id = ANY ($1::bigint[]) AND status = 'completed'",
          [ids],
        )
      )[0]!.n === ids.length,
    { timeoutMs: 10_000, message: "every job submitted after the restart to complete" },
  );
  const held = await db.query<{ n: number }>(
    "SELECT count(*)::integer AS n FROM {{schema}}.jobs WHERE status = 'running'",
  );
  expect(held[0]!.n).toBe(0);
});
