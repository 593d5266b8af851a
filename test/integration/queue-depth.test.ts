import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask } from "../../src/index.ts";
import { finished, killAll, pgwake } from "../fixtures/cli/spawn.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// queue_depth(queues, true) is what an autoscaler scales on (the KEDA query). With running jobs
// counted from the workers' heartbeats, a worker that died holding a job must still count until
// the reaper has put the job back: with the fleet at zero nobody would reap it, and the job
// would stay running for ever.

describe("queue_depth with running jobs", () => {
  let db: TestDb;

  beforeAll(async () => {
    db = await createTestDb("queue_depth");
  });
  afterAll(async () => {
    killAll();
    await db?.close();
  });

  const depth = async (queue: string) =>
    Number(
      (
        await db.query<{ n: string }>("SELECT {{schema}}.queue_depth(ARRAY[$1], true) AS n", [
          queue,
        ])
      )[0]!.n,
    );

  it("counts a job running on a live worker, and a worker that died holding one until it is reaped", {
    timeout: 60_000,
  }, async () => {
    const { job } = await db.pgwake.enqueue("demo.sleep", { ms: 120_000 }, { queue: "held" });
    expect(await depth("held")).toBe(1); // ready
    // A real worker process, without maintenance (so nothing reaps while we look).
    const worker = pgwake(
      [
        "worker",
        "--queues",
        "held",
        "--lease-ms",
        "2000",
        "--heartbeat-ms",
        "300",
        "--maintenance-interval-ms",
        "0",
      ],
      { DATABASE_URL: db.url, PGWAKE_SCHEMA: db.schema },
    );
    await waitFor(async () => (await db.pgwake.getJob(job.id))?.status === "running", {
      timeoutMs: 30_000,
      message: "the job to run",
    });
    // Running, as the worker's heartbeat reports it.
    await waitFor(async () => (await depth("held")) === 1, {
      timeoutMs: 10_000,
      message: "the heartbeat to report the running job",
    });
    const [{ ready }] = (await db.query<{ ready: number }>(
      "SELECT {{schema}}.queue_depth(ARRAY['held']) AS ready",
    )) as [{ ready: number }];
    expect(Number(ready)).toBe(0);

    worker.child.kill("SIGKILL");
    await finished(worker);
    // Its lease runs out; the job is still running (no reaper) and the dead worker still counts.
    await waitFor(
      async () =>
        (
          await db.query<{ expired: boolean }>(
            "SELECT bool_and(lease_expires_at < now()) AS expired FROM {{schema}}.workers",
          )
        )[0]!.expired === true,
      { timeoutMs: 10_000, message: "the dead worker's lease to run out" },
    );
    expect((await db.pgwake.getJob(job.id))?.status).toBe("running");
    expect(await depth("held")).toBe(1);
    expect(await depth("another")).toBe(0);

    // Once something reaps it, the job is ready again and counted as such.
    const reaper = db.pgwake.worker({
      tasks: [defineTask({ name: "noop", handler: () => {} })],
      queues: ["elsewhere"],
      maintenanceIntervalMs: 100,
    });
    await reaper.start();
    try {
      await waitFor(async () => (await db.pgwake.getJob(job.id))?.status === "pending", {
        timeoutMs: 20_000,
        message: "the reaper to put the job back",
      });
      expect(await depth("held")).toBe(1);
      expect(
        (
          await db.query<{ n: number }>(
            "SELECT count(*)::integer AS n FROM {{schema}}.workers WHERE id <> $1",
            [reaper.id],
          )
        )[0]!.n,
      ).toBe(0);
    } finally {
      await reaper.stop();
    }
  });
});
