/**
 * Scenario 2 — connection loss. Mid-drain, every backend of our worker processes (pool and
 * LISTEN connection) is terminated with pg_terminate_backend, three times. Proves: the workers
 * reconnect and finish the drain, nothing is lost, no job completes twice (extra runs only after
 * an expired lease), and the wake-up comes back: a job for an idle worker starts in < 100 ms.
 *
 * Other test files run in other schemas on the same server, so only our processes' backends are
 * terminated: the workers get a DATABASE_URL with an application_name of their own.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  duplicateExecutions,
  enqueueBulk,
  killAll,
  pick,
  report,
  spawnPgwake,
  statusCounts,
  withAppName,
  workerArgs,
  workersRegistered,
} from "./helpers.ts";

const JOBS = pick(10_000, 2_000);
const TERMINATIONS = 3;
const WAKE_SAMPLES = 9;

let db: TestDb;

beforeAll(async () => {
  db = await createFaultDb("connloss");
});

afterAll(async () => {
  await killAll();
  await db?.close();
});

test("terminated backends: workers reconnect, lose nothing, and wake-ups come back", async () => {
  const appName = `pgwake-faults-${db.schema}`;
  const url = withAppName(db.url, appName);
  // A slow fallback poll: a start under 100 ms after the kill can only come from NOTIFY.
  const workers = [0, 1].map(() =>
    spawnPgwake({
      command: "worker",
      url,
      schema: db.schema,
      args: workerArgs({ concurrency: 8, pollMs: 5_000 }),
    }),
  );
  const pids = workers.map((w) => w.pid);
  await waitFor(() => workersRegistered(db, pids), { timeoutMs: 30_000, message: "workers up" });

  const completed = async () =>
    (
      await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM {{schema}}.all_jobs WHERE status = 'completed'",
      )
    )[0]!.n;
  const ourBackends = async () =>
    db.query<{ pid: number; query: string }>(
      "SELECT pid, query FROM pg_stat_activity WHERE application_name = $1",
      [appName],
    );

  await enqueueBulk(db, "faults.record", JOBS, { minMs: 1, maxMs: 10 });
  const terminated: { atCompleted: number; backends: number }[] = [];
  for (let i = 0; i < TERMINATIONS; i++) {
    // Strike while the drain is in full swing, at 20%, 40% and 60%.
    const target = Math.floor((JOBS * (i + 1)) / 5);
    await waitFor(async () => (await completed()) >= target, {
      timeoutMs: 120_000,
      intervalMs: 20,
      message: `${target} jobs completed`,
    });
    const backends = await ourBackends();
    const killed = await db.query<{ ok: boolean }>(
      "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1",
      [appName],
    );
    terminated.push({
      atCompleted: await completed(),
      backends: killed.filter((k) => k.ok).length,
    });
    expect(backends.length).toBeGreaterThanOrEqual(2); // at least each worker's LISTEN connection
  }
  const lastKill = new Date();

  await waitFor(async () => (await completed()) === JOBS, {
    timeoutMs: 180_000,
    intervalMs: 100,
    message: `all ${JOBS} jobs completed after the terminations`,
  });

  // The listener is back when each worker says so in its heartbeat, after the last kill.
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM {{schema}}.workers
           WHERE pid = ANY($1::int[]) AND listening AND last_seen_at > $2`,
          [pids, lastKill],
        )
      )[0]!.n === pids.length,
    { timeoutMs: 60_000, intervalMs: 100, message: "both listeners reconnected" },
  );
  const listenBackends = (await ourBackends()).filter((b) =>
    /^\s*(LISTEN|SELECT 1)/i.test(b.query),
  );
  // Idle workers register as waiters after catching up: then an insert notifies them.
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          `SELECT count(DISTINCT w.id)::int AS n FROM {{schema}}.waiters x
           JOIN {{schema}}.workers w ON w.id = x.worker_id WHERE w.pid = ANY($1::int[])`,
          [pids],
        )
      )[0]!.n === pids.length,
    { timeoutMs: 30_000, intervalMs: 50, message: "both workers waiting for a wake-up" },
  );

  const wakeMs: number[] = [];
  for (let i = 0; i < WAKE_SAMPLES; i++) {
    const { job } = await db.pgwake.enqueue("faults.record", { minMs: 1, maxMs: 1 });
    const [row] = await waitFor(
      () =>
        db
          .query<{ ms: number }>(
            `SELECT extract(epoch FROM e.started_at - j.created_at)::float8 * 1000 AS ms
           FROM {{schema}}.fault_executions e JOIN {{schema}}.all_jobs j ON j.id = e.job_id
           WHERE e.job_id = $1`,
            [job.id],
          )
          .then((rows) => (rows.length ? rows : null)),
      { timeoutMs: 20_000, intervalMs: 5, message: `wake-up job ${job.id} started` },
    );
    wakeMs.push(Math.round(row!.ms * 10) / 10);
    await waitFor(async () => (await db.pgwake.getJob(job.id))?.status === "completed", {
      intervalMs: 5,
    });
  }
  const sorted = [...wakeMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;

  for (const w of workers) w.child.kill("SIGTERM");
  const exits = await Promise.all(workers.map((w) => w.exited));

  const counts = await statusCounts(db);
  const duplicates = await duplicateExecutions(db);
  const [events] = await db.query<{ leaseExpired: number; ignored: number; notRun: number }>(
    `SELECT (SELECT count(*)::int FROM {{schema}}.job_events WHERE kind = 'lease_expired') AS "leaseExpired",
            (SELECT count(*)::int FROM {{schema}}.job_events WHERE kind = 'outcome_ignored') AS ignored,
            (SELECT count(*)::int FROM {{schema}}.all_jobs j WHERE NOT EXISTS
               (SELECT 1 FROM {{schema}}.fault_executions e WHERE e.job_id = j.id)) AS "notRun"`,
  );

  report("scenario 2: connection loss", {
    jobs: JOBS,
    terminations: terminated,
    duplicateJobs: duplicates.length,
    leaseExpiredEvents: events!.leaseExpired,
    outcomesIgnored: events!.ignored,
    listenBackendsAfter: listenBackends.length,
    wakeUpMs: wakeMs,
    wakeUpMedianMs: median,
    statuses: counts,
  });

  expect(counts).toEqual({ completed: JOBS + WAKE_SAMPLES });
  expect(events!.notRun).toBe(0);
  for (const d of duplicates) {
    expect(d.leaseExpired, `job ${d.jobId} ran ${d.runs} times`).toBeGreaterThanOrEqual(d.runs - 1);
  }
  expect(median).toBeLessThan(100);
  expect(exits.map((e) => e.code)).toEqual([0, 0]);
});
