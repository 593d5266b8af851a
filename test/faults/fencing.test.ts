/**
 * Scenario 10 — fencing (issue 10, bug 6). A worker runs long jobs when its pool goes silent: it
 * cannot heartbeat. Its lease runs out and another worker reaps and runs the same jobs.
 *
 * Proves "never concurrently": the first worker stops its handlers (their signals fire with
 * LEASE_LOST) before its lease runs out, so for every job its execution ended before the second
 * worker's began (start and end of every execution recorded by the handler, straight to Postgres);
 * each job completes once, by the second worker, and the first writes no outcome for them.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { applicationNameIs, type FaultProxy, startFaultProxy } from "../helpers/faultProxy.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  fixtureWorkerId,
  killAll,
  pick,
  report,
  spawnFixtureWorker,
  statusCounts,
} from "./helpers.ts";
import { overlappingExecutions } from "./measure.ts";
import { silence } from "./silence.ts";

const JOBS = pick(8, 4);
const LEASE_MS = 3_000;
/** The first attempt outlives the lease by far; the rerun is short. */
const JOB_MS = pick(20_000, 10_000);
const RETRY_MS = 300;

let db: TestDb;
let proxy: FaultProxy;

beforeAll(async () => {
  db = await createFaultDb("fencing");
  const target = new URL(db.url);
  proxy = await startFaultProxy({
    target: { host: target.hostname, port: Number(target.port || 5432) },
  });
});

afterAll(async () => {
  await killAll();
  await proxy?.close();
  await db?.close();
});

interface Execution {
  jobId: number;
  workerId: string;
  pid: number;
  attempt: number;
  startedAt: number;
  finishedAt: number | null;
  aborted: string | null;
}

const executions = (): Promise<Execution[]> =>
  db.query<Execution>(
    `SELECT job_id::int AS "jobId", worker_id AS "workerId", pid, attempt,
            (extract(epoch FROM started_at) * 1000)::float8 AS "startedAt",
            (extract(epoch FROM finished_at) * 1000)::float8 AS "finishedAt", aborted
     FROM {{schema}}.fault_executions ORDER BY job_id, id`,
  );

test("a worker that cannot heartbeat stops its jobs before another worker may start them", async () => {
  const common = {
    tasks: ["faults.longRun"],
    concurrency: JOBS,
    leaseMs: LEASE_MS,
    heartbeatMs: 1_000,
    pollIntervalMs: 500,
    networkTimeoutMs: 3_000,
  };
  const first = spawnFixtureWorker(db, {
    ...common,
    connectionString: proxy.via(db.url),
    maintenanceIntervalMs: 0,
  });
  await fixtureWorkerId(first);
  await db.pgwake.enqueueMany(
    Array.from({ length: JOBS }, () => ({
      task: "faults.longRun",
      payload: { ms: JOB_MS, retryMs: RETRY_MS },
      maxAttempts: 3,
    })),
  );
  await waitFor(async () => (await executions()).length === JOBS, {
    timeoutMs: 30_000,
    message: "the first worker runs every job",
  });
  // The rescuer starts only now, so the first worker holds every job.
  const second = spawnFixtureWorker(db, { ...common, maintenanceIntervalMs: 200 });
  const secondId = await fixtureWorkerId(second);

  const cut = silence(proxy, applicationNameIs("pgwake-worker"));
  await waitFor(
    async () => {
      const runs = await executions();
      return runs.filter((r) => r.pid === second.pid).length === JOBS;
    },
    { timeoutMs: 30_000, intervalMs: 50, message: "the second worker runs every job" },
  );
  const secondStartedAt = Date.now();
  await waitFor(async () => (await statusCounts(db)).completed === JOBS, {
    timeoutMs: 60_000,
    intervalMs: 50,
    message: "every job completed",
  });
  cut.heal();
  // Let the first worker find its way back: whatever it writes now must change nothing.
  await waitFor(
    () => first.logs().find((l) => /lease renewed|started over/.test(l.msg) && l.time > cut.since),
    { timeoutMs: 30_000, message: "the first worker reconnected" },
  ).catch(() => null);

  const runs = await executions();
  const overlaps = await overlappingExecutions(db);
  const firstRuns = runs.filter((r) => r.pid === first.pid);
  const jobs = await db.query<{ id: number; status: string; attempts: number; owner: string }>(
    "SELECT id::int, status, attempts, lease_owner AS owner FROM {{schema}}.all_jobs ORDER BY id",
  );
  const perJob = jobs.map((job) => {
    const a = firstRuns.find((r) => r.jobId === job.id);
    const b = runs.find((r) => r.jobId === job.id && r.pid === second.pid);
    return {
      job: job.id,
      firstStoppedBy: a?.aborted ?? (a?.finishedAt ? "finished" : "still running"),
      firstEndedToSecondStartMs: a?.finishedAt && b ? Math.round(b.startedAt - a.finishedAt) : null,
      firstStoppedAfterSilenceMs: a?.finishedAt ? Math.round(a.finishedAt - cut.since) : null,
    };
  });
  report("scenario 10: fencing (no heartbeat, no concurrent run)", {
    jobs: JOBS,
    leaseMs: LEASE_MS,
    jobMs: JOB_MS,
    perJob,
    overlappingExecutions: overlaps.length,
    secondStartedAllAfterSilenceMs: secondStartedAt - cut.since,
    statuses: await statusCounts(db),
    completedBy: [...new Set(jobs.map((j) => j.owner))],
  });

  expect(firstRuns).toHaveLength(JOBS);
  for (const run of firstRuns) {
    expect(run.aborted, `job ${run.jobId} on the first worker`).toBe("LEASE_LOST");
    expect(run.finishedAt! - cut.since).toBeLessThan(LEASE_MS);
  }
  expect(overlaps).toEqual([]);
  expect(jobs.every((j) => j.status === "completed" && j.owner === secondId)).toBe(true);
});
