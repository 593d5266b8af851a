/**
 * Scenario 1 — worker crashes. Four `pgwake worker` processes drain a backlog while a chaos loop
 * SIGKILLs a random one every second and starts a replacement. Proves: every job completes; a
 * job runs twice only when its worker died holding it (and then it has a lease_expired event);
 * the jobs a dead worker held are recovered within lease + reaper interval (+ slack).
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  duplicateExecutions,
  enqueueBulk,
  killAll,
  type PgwakeProcess,
  pick,
  report,
  spawnPgwake,
  statusCounts,
  workerArgs,
  workersRegistered,
} from "./helpers.ts";

const JOBS = pick(20_000, 3_000);
/** Full profile: kill every second until the backlog is drained. CI: this many kills. */
const MAX_KILLS = pick(Number.POSITIVE_INFINITY, 5);
const WORKERS = 4;
const LEASE_MS = 3_000;
const HEARTBEAT_MS = 1_000;
/** The worker's built-in maintenance interval (5 s, jittered up to +25%). */
const REAPER_MAX_MS = 6_250;
/** This is a shared 2-core box: claims, runs and writes can stall for a few seconds. */
const SLACK_MS = 5_000;

let db: TestDb;

beforeAll(async () => {
  db = await createFaultDb("crash");
});

afterAll(async () => {
  await killAll();
  await db?.close();
});

interface Kill {
  pid: number;
  workerId: string | null;
  at: number;
  held: number[];
  /** The reaper took the jobs from the dead worker (kill → no job running under its name). */
  reapedMs?: number;
  /** Another worker runs them (or they are done). */
  reclaimedMs?: number;
  /** All of them completed. */
  recoveredMs?: number;
}

test("SIGKILLed workers lose no job and duplicate only the jobs they held", async () => {
  await enqueueBulk(db, "faults.record", JOBS);
  const start = (): PgwakeProcess =>
    spawnPgwake({
      command: "worker",
      url: db.url,
      schema: db.schema,
      args: workerArgs({ leaseMs: LEASE_MS, heartbeatMs: HEARTBEAT_MS, concurrency: 8 }),
    });
  const workers: PgwakeProcess[] = Array.from({ length: WORKERS }, start);
  const startedAt = Date.now();

  const kills: Kill[] = [];
  const remaining = async () =>
    (
      await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM {{schema}}.all_jobs WHERE status <> 'completed'",
      )
    )[0]!.n;

  // Watches every kill until the jobs its worker held are claimed again and completed.
  let watching = true;
  const watcher = (async () => {
    while (watching || kills.some((k) => k.recoveredMs === undefined)) {
      for (const kill of kills) {
        if (kill.recoveredMs !== undefined) continue;
        const [row] = await db.query<{ reaped: boolean; reclaimed: boolean; completed: boolean }>(
          `SELECT bool_and(status <> 'running' OR lease_owner IS DISTINCT FROM $2) AS reaped,
                  bool_and(status = 'completed' OR (status = 'running' AND lease_owner IS DISTINCT FROM $2))
                    AS reclaimed,
                  bool_and(status = 'completed') AS completed
           FROM {{schema}}.all_jobs WHERE id = ANY($1::bigint[])`,
          [kill.held, kill.workerId],
        );
        const now = Date.now();
        if (kill.reapedMs === undefined && (row?.reaped ?? true)) kill.reapedMs = now - kill.at;
        if (kill.reclaimedMs === undefined && (row?.reclaimed ?? true))
          kill.reclaimedMs = now - kill.at;
        if (row?.completed ?? true) kill.recoveredMs = now - kill.at;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();

  // The chaos loop: one SIGKILL a second, a replacement at once.
  while (kills.length < MAX_KILLS && (await remaining()) > 0) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const alive = workers.filter((w) => w.alive);
    const victim = alive[Math.floor(Math.random() * alive.length)]!;
    const [registered] = await db.query<{ id: string }>(
      "SELECT id FROM {{schema}}.workers WHERE pid = $1",
      [victim.pid],
    );
    victim.child.kill("SIGKILL");
    const at = Date.now();
    await victim.exited;
    workers.push(start());
    // Read after the process is gone: nothing it held can change any more except by the reaper,
    // which cannot act before the lease (3 s) runs out.
    const held = registered
      ? (
          await db.query<{ id: number }>(
            "SELECT id FROM {{schema}}.all_jobs WHERE status = 'running' AND lease_owner = $1",
            [registered.id],
          )
        ).map((r) => r.id)
      : [];
    kills.push({ pid: victim.pid, workerId: registered?.id ?? null, at, held });
  }

  await waitFor(async () => (await remaining()) === 0, {
    timeoutMs: pick(300_000, 120_000),
    intervalMs: 250,
    message: `all ${JOBS} jobs completed`,
  });
  const drainMs = Date.now() - startedAt;
  watching = false;
  await watcher;

  // Graceful stop of the survivors: they must all exit 0.
  const survivors = workers.filter((w) => w.alive);
  // A replacement started a moment ago may still be loading: until it has registered, it has
  // not taken over SIGTERM yet (and holds nothing), so wait for it first.
  await waitFor(
    () =>
      workersRegistered(
        db,
        survivors.map((w) => w.pid),
      ),
    { timeoutMs: 30_000, message: "every surviving worker registered" },
  );
  for (const w of survivors) w.child.kill("SIGTERM");
  const exits = await Promise.all(survivors.map((w) => w.exited));

  const counts = await statusCounts(db);
  const [runs] = await db.query<{ executions: number; jobsRun: number; notRun: number }>(
    `SELECT (SELECT count(*)::int FROM {{schema}}.fault_executions) AS executions,
            (SELECT count(DISTINCT job_id)::int FROM {{schema}}.fault_executions) AS "jobsRun",
            (SELECT count(*)::int FROM {{schema}}.all_jobs j WHERE NOT EXISTS
               (SELECT 1 FROM {{schema}}.fault_executions e WHERE e.job_id = j.id)) AS "notRun"`,
  );
  const duplicates = await duplicateExecutions(db);
  // A SIGKILLed worker's backend may still commit a claim it was running when its client died,
  // after the "held" snapshot above: the events name the worker that lost each lease, so a job
  // counts as held by a killed worker when its lease_expired event names one.
  const killedIds = new Set(kills.map((k) => k.workerId).filter((id) => id !== null));
  const leaseExpired = await db.query<{ jobId: number; lostWorker: string }>(
    `SELECT DISTINCT job_id::int AS "jobId", worker_id AS "lostWorker"
     FROM {{schema}}.job_events WHERE kind = 'lease_expired'`,
  );
  const heldByKilled = new Set([
    ...kills.flatMap((k) => k.held),
    ...leaseExpired.filter((e) => killedIds.has(e.lostWorker)).map((e) => e.jobId),
  ]);
  const overAttempts = await db.query<{ id: number }>(
    `SELECT j.id FROM {{schema}}.all_jobs j
     WHERE j.attempts < (SELECT count(*) FROM {{schema}}.fault_executions e WHERE e.job_id = j.id)`,
  );
  const maxReapMs = Math.max(0, ...kills.map((k) => k.reapedMs ?? 0));
  const maxReclaimMs = Math.max(0, ...kills.map((k) => k.reclaimedMs ?? 0));
  const maxRecoveryMs = Math.max(0, ...kills.map((k) => k.recoveredMs ?? 0));

  report("scenario 1: worker crashes", {
    jobs: JOBS,
    workers: WORKERS,
    leaseMs: LEASE_MS,
    kills: kills.length,
    jobsHeldByKilledWorkers: heldByKilled.size,
    executions: runs!.executions,
    duplicateJobs: duplicates.length,
    duplicatesWithoutLeaseExpired: duplicates.filter((d) => d.leaseExpired === 0).length,
    jobsWithLeaseExpired: leaseExpired.length,
    maxReapMs,
    maxReclaimMs,
    maxRecoveryMs,
    recoveryBoundMs: LEASE_MS + REAPER_MAX_MS + SLACK_MS,
    recoveriesMs: kills.map((k) => k.recoveredMs),
    drainMs,
    survivorExitCodes: exits.map((e) => e.code ?? e.signal),
    statuses: counts,
  });

  expect(counts).toEqual({ completed: JOBS });
  expect(runs!.notRun).toBe(0);
  expect(runs!.jobsRun).toBe(JOBS);
  expect(kills.length).toBeGreaterThanOrEqual(Math.min(MAX_KILLS, 3));
  // Every extra run is explained: the job was held by a killed worker and its lease expired.
  for (const d of duplicates) {
    expect(heldByKilled.has(d.jobId), `job ${d.jobId} ran twice but no killed worker held it`).toBe(
      true,
    );
    expect(d.leaseExpired, `job ${d.jobId} ran ${d.runs} times`).toBeGreaterThanOrEqual(d.runs - 1);
  }
  // Leases expire only for workers that were killed: a live worker never loses one.
  for (const { jobId, lostWorker } of leaseExpired) {
    expect(killedIds.has(lostWorker), `job ${jobId} lost its lease on live ${lostWorker}`).toBe(
      true,
    );
  }
  // attempts count claims; a claim never runs a handler twice.
  expect(overAttempts).toEqual([]);
  expect(maxRecoveryMs).toBeLessThanOrEqual(LEASE_MS + REAPER_MAX_MS + SLACK_MS);
  expect(exits.every((e) => e.code === 0)).toBe(true);
});
