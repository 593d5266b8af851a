/**
 * Scenario 11 — shutdown never hangs (issue 10, bug 8).
 *
 * (a) `pgwake worker` gets SIGTERM while the database is unreachable (every connection, pool and
 *     LISTEN, silent through the fault proxy) and its handlers ignore their abort signal: it exits
 *     within its grace period plus a bounded margin (what it could not write is left to the lease).
 * (b) A library user's `worker.stop()` leaves no timer, socket or handle behind: the fixture
 *     process (test/faults/fixtures/worker.ts) runs a job, calls `stop()` and then must end on its
 *     own, without `process.exit` — with the database up, and after the database went silent.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/faultProxy.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  fixtureWorkerId,
  killAll,
  type PgwakeProcess,
  report,
  spawnFixtureWorker,
  spawnPgwake,
  workerArgs,
  workersRegistered,
} from "./helpers.ts";

const GRACE_MS = 2_000;
/** The worker's shutdown margin after grace (src/worker/worker.ts). */
const SHUTDOWN_MARGIN_MS = 3_000;
/** Process start-up of the exit and a loaded 2-core box. */
const SLACK_MS = 3_000;
/** After `stop()` resolved, how long the process may take to end on its own. */
const EXIT_AFTER_STOP_MS = 2_000;

let db: TestDb;
let proxy: FaultProxy;

beforeAll(async () => {
  db = await createFaultDb("shutsilent");
});

afterEach(async () => {
  await killAll();
  await proxy?.close();
});

afterAll(async () => {
  await db?.close();
});

async function newProxy(): Promise<FaultProxy> {
  const target = new URL(db.url);
  proxy = await startFaultProxy({
    target: { host: target.hostname, port: Number(target.port || 5432) },
  });
  return proxy;
}

/** Waits for the process to exit, at most `timeoutMs`; null if it is still running. */
async function exitWithin(
  proc: PgwakeProcess,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number } | null> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    proc.exited,
    new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  return result;
}

test("SIGTERM while the database is silent: pgwake worker exits within grace + margin", async () => {
  const p = await newProxy();
  const worker = spawnPgwake({
    command: "worker",
    url: p.via(db.url),
    schema: db.schema,
    args: [...workerArgs({ concurrency: 4 }), "--shutdown-grace-ms", String(GRACE_MS)],
  });
  await waitFor(() => workersRegistered(db, [worker.pid]), {
    timeoutMs: 30_000,
    message: "worker up",
  });
  // Handlers that ignore their signal and outlive everything.
  await db.pgwake.enqueueMany(
    Array.from({ length: 4 }, () => ({
      task: "faults.slow",
      payload: { ms: 60_000, honorAbort: false },
    })),
  );
  await waitFor(
    async () =>
      (await db.query("SELECT 1 FROM {{schema}}.fault_executions WHERE finished_at IS NULL"))
        .length === 4,
    { timeoutMs: 30_000, message: "4 jobs running" },
  );
  p.setMode("blackhole");
  const silentAt = Date.now();
  // Something is in flight on the silent network (a heartbeat, a poll) before the signal.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const termAt = Date.now();
  worker.child.kill("SIGTERM");
  const bound = GRACE_MS + SHUTDOWN_MARGIN_MS + SLACK_MS;
  const exit = await exitWithin(worker, bound + 20_000);
  p.heal();
  report("scenario 11a: SIGTERM while the database is silent", {
    graceMs: GRACE_MS,
    silentBeforeSigtermMs: termAt - silentAt,
    exitCode: exit?.code ?? "still running",
    exitSignal: exit?.signal ?? null,
    exitMs: exit ? exit.at - termAt : null,
    boundMs: bound,
    // The shutdown as the worker logged it, in ms after the signal.
    timeline: worker
      .logs()
      .filter((l) => l.time >= termAt)
      .map((l) => `${l.time - termAt} ${l.msg}`),
  });
  expect(exit, worker.output()).not.toBeNull();
  expect(exit!.at - termAt).toBeLessThanOrEqual(bound);
  expect(exit!.code).toBe(0);
});

async function stopAndExit(options: { silentFirst: boolean }) {
  const p = await newProxy();
  const worker = spawnFixtureWorker(db, {
    connectionString: p.via(db.url),
    tasks: ["faults.a"],
    leaseMs: 3_000,
    heartbeatMs: 1_000,
    pollIntervalMs: 1_000,
    maintenanceIntervalMs: 500,
    networkTimeoutMs: 3_000,
    livenessMs: 1_500,
    graceMs: GRACE_MS,
  });
  await fixtureWorkerId(worker);
  const { job } = await db.pgwake.enqueue("faults.a", {});
  await waitFor(async () => (await db.pgwake.getJob(job.id))?.status === "completed", {
    timeoutMs: 30_000,
    message: "the job ran",
  });
  let silentAt: number | null = null;
  if (options.silentFirst) {
    p.setMode("blackhole");
    silentAt = Date.now();
    // Long enough for statements to time out, claims to back off and the lease keeper to fence.
    await waitFor(
      () => worker.logs().find((l) => l.time > silentAt! && /lease not renewed/.test(l.msg)),
      { timeoutMs: 15_000, message: "the worker fenced itself" },
    );
  }
  const stopAt = Date.now();
  worker.child.stdin?.write("stop\n");
  const exit = await exitWithin(worker, GRACE_MS + SHUTDOWN_MARGIN_MS + 15_000);
  p.heal();
  const stopped = worker.logs().find((l) => l.msg === "fixture: stopped");
  const lingering = worker.logs().filter((l) => l.msg === "lingering");
  const figures = {
    databaseSilent: options.silentFirst,
    silentBeforeStopMs: silentAt === null ? null : stopAt - silentAt,
    stopResolvedMs: stopped ? stopped.time - stopAt : null,
    exitCode: exit?.code ?? "still running",
    exitAfterStopResolvedMs: exit && stopped ? exit.at - stopped.time : null,
    keptAliveBy: lingering.map((l) => l.resources),
  };
  return { figures, exit, stopped, worker, stopAt };
}

test("stop() leaves nothing behind: the process ends on its own after a job", async () => {
  const { figures, exit, stopped, worker } = await stopAndExit({ silentFirst: false });
  report("scenario 11b: stop() then exit on its own (database up)", figures);
  expect(exit, worker.output()).not.toBeNull();
  expect(exit!.code, worker.output()).toBe(0);
  expect(stopped).toBeDefined();
  expect(exit!.at - stopped!.time).toBeLessThanOrEqual(EXIT_AFTER_STOP_MS);
});

test("stop() leaves nothing behind after the database went silent", async () => {
  const { figures, exit, stopped, worker, stopAt } = await stopAndExit({ silentFirst: true });
  report("scenario 11c: stop() then exit on its own (database silent)", figures);
  expect(exit, worker.output()).not.toBeNull();
  expect(exit!.code, worker.output()).toBe(0);
  expect(stopped).toBeDefined();
  expect(stopped!.time - stopAt).toBeLessThanOrEqual(GRACE_MS + SHUTDOWN_MARGIN_MS + SLACK_MS);
  expect(exit!.at - stopped!.time).toBeLessThanOrEqual(EXIT_AFTER_STOP_MS);
});
