import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const FIXTURE = fileURLToPath(new URL("../fixtures/worker-process.ts", import.meta.url));
const JOBS = 3;
const LEASE_MS = 2_000;

/** The survivor's handler: when it ran each job (ms since epoch), by job id. */
const survivorRuns = new Map<number, number>();
const hang = defineTask({
  name: "hang",
  handler: (_payload, ctx) => {
    survivorRuns.set(ctx.job.id, Date.now());
    return { recoveredBy: ctx.workerId, attempt: ctx.attempt };
  },
});

describe("crash recovery with a real process", () => {
  let db: TestDb;
  let child: ChildProcess | undefined;
  let survivor: Worker | undefined;

  beforeAll(async () => {
    db = await createTestDb("crash", { tasks: [hang] });
  });
  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await survivor?.stop({ graceMs: 1_000 });
    await db?.close();
  });

  it("a SIGKILLed worker's jobs are run by another worker after the lease expires", {
    timeout: 90_000,
  }, async () => {
    const childId = `doomed-${process.pid}`;
    const ids = (
      await db.pgwake.enqueueMany(
        Array.from({ length: JOBS }, (_, n) => ({ task: "hang", payload: { n } })),
      )
    ).map((r) => r.job.id);

    child = spawn(process.execPath, [FIXTURE], {
      env: {
        ...process.env,
        PGWAKE_URL: db.url,
        PGWAKE_SCHEMA: db.schema,
        PGWAKE_WORKER_ID: childId,
        PGWAKE_LEASE_MS: String(LEASE_MS),
        PGWAKE_CONCURRENCY: String(JOBS),
      },
      stdio: ["pipe", "pipe", "inherit"],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child!.once("exit", (_code, signal) => resolve(signal)),
    );
    const startedInChild = new Set<number>();
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const match = /^started (\d+) (\d+)$/.exec(line);
      if (match) startedInChild.add(Number(match[1]));
    });

    await waitFor(() => startedInChild.size === JOBS, {
      timeoutMs: 30_000,
      message: "the child to start every job",
    });
    const held = await db.query<{
      id: number;
      status: string;
      lease_owner: string;
      attempts: number;
    }>("SELECT id, status, lease_owner, attempts FROM {{schema}}.all_jobs ORDER BY id");
    expect(held).toEqual(
      ids.map((id) => ({ id, status: "running", lease_owner: childId, attempts: 1 })),
    );

    // The survivor starts while the child still holds the leases: it must not take the jobs.
    survivor = db.pgwake.worker({
      workerId: "survivor",
      leaseMs: LEASE_MS,
      heartbeatMs: 500,
      pollIntervalMs: 200,
      maintenanceIntervalMs: 200,
    });
    await survivor.start();

    expect(child.kill("SIGKILL")).toBe(true);
    expect(await exited).toBe("SIGKILL");
    const killedAt = Date.now();

    await waitFor(
      async () =>
        (
          await db.query<{ n: number }>(
            "SELECT count(*)::integer AS n FROM {{schema}}.all_jobs WHERE status = 'completed'",
          )
        )[0]!.n === JOBS,
      { timeoutMs: 60_000, intervalMs: 50, message: "the survivor to complete every job" },
    );
    console.log(
      `recovered ${JOBS} jobs ${Date.now() - killedAt} ms after SIGKILL (lease ${LEASE_MS} ms)`,
    );
    expect([...survivorRuns.keys()].sort()).toEqual([...ids].sort());

    for (const id of ids) {
      const job = (await db.pgwake.getJob(id))!;
      expect(job).toMatchObject({
        status: "completed",
        attempts: 2,
        leaseOwner: "survivor",
        result: { recoveredBy: "survivor", attempt: 2 },
      });
      const events = await db.query<{
        kind: string;
        attempt: number;
        worker_id: string | null;
        data: { lostWorker?: string };
        at: Date;
      }>(
        "SELECT kind, attempt, worker_id, data, at FROM {{schema}}.job_events WHERE job_id = $1 ORDER BY id",
        [id],
      );
      expect(events.map((e) => [e.kind, e.attempt, e.worker_id])).toEqual([
        ["lease_expired", 1, childId],
        ["retry_scheduled", 1, null],
      ]);
      expect(events[0]!.data.lostWorker).toBe(childId);
      // The second run started only after the lease had expired (database time).
      expect(job.startedAt!.getTime()).toBeGreaterThanOrEqual(events[0]!.at.getTime());

      const timeline = await db.pgwake.timeline(id);
      expect(timeline!.events.map((e) => [e.kind, e.workerId])).toEqual([
        ["enqueued", null],
        ["claimed", childId],
        ["lease_expired", childId],
        ["retry_scheduled", null],
        ["claimed", "survivor"],
        ["completed", "survivor"],
      ]);
    }
  });
});
