/**
 * Scenario 7 — graceful shutdown under load. A `pgwake worker` gets SIGTERM mid-drain.
 * Proves: it exits 0 within its grace period (plus a little for the final writes); jobs that
 * fit in the grace period finish; jobs that do not (and jobs claimed ahead of a free slot, never
 * started) are handed back without a burned attempt, and another worker completes them. In the
 * side-effect table, attempts never exceed real executions, and every extra execution is a
 * `returned` event.
 */
import { afterEach, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  enqueueBulk,
  killAll,
  pick,
  report,
  spawnPgwake,
  statusCounts,
  workerArgs,
  workersRegistered,
} from "./helpers.ts";

/** Closing the listener, flushing outcomes and ending the pool after the grace period. */
const EXIT_SLACK_MS = 3_000;

const dbs: TestDb[] = [];
afterEach(async () => {
  await killAll();
  for (const db of dbs.splice(0)) await db.close();
});

async function run(options: {
  name: string;
  jobs: number;
  jobMs: number;
  graceMs: number;
  honorAbort: boolean;
}) {
  const db = await createFaultDb(`shutdown_${options.name}`);
  dbs.push(db);
  const args = (graceMs: number, concurrency = 8) => [
    ...workerArgs({ concurrency }),
    "--shutdown-grace-ms",
    String(graceMs),
  ];
  const victim = spawnPgwake({
    command: "worker",
    url: db.url,
    schema: db.schema,
    args: args(options.graceMs),
  });
  await waitFor(() => workersRegistered(db, [victim.pid]), {
    timeoutMs: 30_000,
    message: "worker up",
  });
  await enqueueBulk(db, "faults.slow", options.jobs, {
    ms: options.jobMs,
    honorAbort: options.honorAbort,
  });
  // SIGTERM while it holds a full set of running jobs.
  const [registered] = await db.query<{ id: string }>(
    "SELECT id FROM {{schema}}.workers WHERE pid = $1",
    [victim.pid],
  );
  const victimId = registered!.id;
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM {{schema}}.fault_executions WHERE worker_id = $1 AND finished_at IS NULL`,
          [victimId],
        )
      )[0]!.n >= 8,
    { timeoutMs: 30_000, intervalMs: 10, message: "the worker is busy" },
  );
  const [running] = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM {{schema}}.all_jobs WHERE status = 'running' AND lease_owner = $1",
    [victimId],
  );
  const runningAtTerm = running!.n;
  const termAt = Date.now();
  victim.child.kill("SIGTERM");
  const exit = await victim.exited;
  const exitMs = exit.at - termAt;

  // A second worker finishes what is left.
  const rescuer = spawnPgwake({
    command: "worker",
    url: db.url,
    schema: db.schema,
    args: args(10_000, 32),
  });
  await waitFor(async () => (await statusCounts(db)).completed === options.jobs, {
    timeoutMs: 120_000,
    intervalMs: 100,
    message: `all ${options.jobs} jobs completed`,
  });
  rescuer.child.kill("SIGTERM");
  const rescuerExit = await rescuer.exited;

  const perJob = await db.query<{
    id: number;
    attempts: number;
    runs: number;
    returned: number;
    expired: number;
    cutShort: number;
  }>(
    `SELECT j.id::int, j.attempts,
            (SELECT count(*)::int FROM {{schema}}.fault_executions e WHERE e.job_id = j.id) AS runs,
            (SELECT count(*)::int FROM {{schema}}.fault_executions e
             WHERE e.job_id = j.id AND e.worker_id = $1 AND e.finished_at IS NULL) AS "cutShort",
            (SELECT count(*)::int FROM {{schema}}.job_events v WHERE v.job_id = j.id AND v.kind = 'returned') AS returned,
            (SELECT count(*)::int FROM {{schema}}.job_events v WHERE v.job_id = j.id AND v.kind = 'lease_expired') AS expired
     FROM {{schema}}.all_jobs j`,
    [victimId],
  );
  const [victimRuns] = await db.query<{ finished: number; unfinished: number }>(
    `SELECT count(*) FILTER (WHERE finished_at IS NOT NULL)::int AS finished,
            count(*) FILTER (WHERE finished_at IS NULL)::int AS unfinished
     FROM {{schema}}.fault_executions WHERE worker_id = $1`,
    [victimId],
  );
  // A job is handed back either after its handler started here and was cut short (an extra
  // execution), or untouched: claimed ahead of a free slot (the worker buffers a moment of work)
  // and never started (no execution). Both give their attempt back.
  const returned = perJob.reduce((sum, j) => sum + j.returned, 0);
  const returnedStarted = perJob.filter((j) => j.returned > 0 && j.cutShort > 0).length;
  const returnedUnstarted = returned - returnedStarted;
  const burned = perJob.filter((j) => j.attempts > j.runs);
  const unexplained = perJob.filter(
    (j) => j.runs !== j.attempts + Math.min(j.returned, j.cutShort) + j.expired,
  );
  const counts = await statusCounts(db);
  report(`scenario 7: graceful shutdown (${options.name})`, {
    jobs: options.jobs,
    jobMs: options.jobMs,
    graceMs: options.graceMs,
    runningAtSigterm: runningAtTerm,
    exitCode: exit.code,
    exitMs,
    finishedByVictim: victimRuns!.finished,
    cutShortByVictim: victimRuns!.unfinished,
    returnedEvents: returned,
    returnedAfterStarting: returnedStarted,
    returnedUnstarted,
    attemptsAboveExecutions: burned.length,
    executionsUnexplained: unexplained.length,
    statuses: counts,
  });
  expect(exit.code, victim.output()).toBe(0);
  expect(exitMs).toBeLessThanOrEqual(options.graceMs + EXIT_SLACK_MS);
  expect(counts).toEqual({ completed: options.jobs });
  expect(burned).toEqual([]);
  expect(unexplained).toEqual([]);
  expect(rescuerExit.code).toBe(0);
  return {
    runningAtTerm,
    returned,
    returnedStarted,
    finished: victimRuns!.finished,
    unfinished: victimRuns!.unfinished,
  };
}

test("SIGTERM mid-drain: running jobs finish within the grace period, exit 0", async () => {
  const r = await run({
    name: "finish",
    jobs: pick(400, 200),
    jobMs: 500,
    graceMs: 5_000,
    honorAbort: false,
  });
  // Only jobs that never started may be handed back (claimed ahead of a free slot).
  expect(r.returnedStarted).toBe(0);
  expect(r.unfinished).toBe(0);
});

test("SIGTERM with handlers longer than the grace period: returned without a burned attempt", async () => {
  const r = await run({
    name: "return",
    jobs: pick(100, 40),
    jobMs: 4_000,
    graceMs: 1_000,
    honorAbort: true,
  });
  expect(r.returned).toBeGreaterThanOrEqual(r.runningAtTerm);
  expect(r.unfinished).toBe(r.returnedStarted);
});

test("SIGTERM with handlers that ignore their abort signal: still exit 0, attempts given back", async () => {
  const r = await run({
    name: "ignore",
    jobs: pick(100, 40),
    jobMs: 4_000,
    graceMs: 1_000,
    honorAbort: false,
  });
  expect(r.returned).toBeGreaterThanOrEqual(r.runningAtTerm);
});
