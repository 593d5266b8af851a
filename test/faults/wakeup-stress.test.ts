/**
 * Scenario 15 — no lost wake-up, under stress (issue 10, bug 7). Four worker processes with
 * different task sets and queues, all with a 60 s fallback poll; three submitters commit jobs of
 * random tasks and queues in bursts (300 ms of submissions, 1.2 s of quiet, so that a job left
 * without a wake-up is not rescued by the next submission), roll back at random (a plain
 * ROLLBACK, or a failure at commit after the wake-up took a token), and submit through the
 * library; three of the workers are SIGKILLed at random and restarted.
 *
 * Proves: no wake-up is lost — every committed job starts within 1 s of its commit (a lost one
 * waits for the 60 s poll) — and measures the 100 ms target: the time from the COMMIT
 * returning to its submitter to the job's handler being entered (one clock, this host's), with
 * p50/p99/max and every job over 100 ms listed with its claim time and worker. Jobs that a killed
 * worker had claimed before their handler started are left out (they wait for the lease, and
 * their `lease_expired` event says so).
 *
 * Worker 3 serves every task of every queue and is never killed, so some live worker can always
 * run any job: a job that waits is a lost wake-up, not a missing worker.
 */
import pg from "pg";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";
import { createCommitGuard } from "./commitGuard.ts";
import {
  createFaultDb,
  fixtureWorkerId,
  killAll,
  type PgwakeProcess,
  pick,
  report,
  spawnFixtureWorker,
} from "./helpers.ts";
import { percentiles } from "./measure.ts";

const DURATION_MS = pick(60_000, 10_000);
const BURST_MS = 300;
/** Longer than LOST_MS. */
const QUIET_MS = 1_200;
const SUBMITTERS = 3;
/** The target for every job. On a shared, loaded 2-core box the tail exceeds it. */
const TARGET_MS = 100;
/**
 * What a lost wake-up would cost at least: the 60 s poll, or before the fixes 1.5–2.2 s after a
 * killed waiter. Every job must start within this.
 */
const LOST_MS = 1_000;
const POLL_MS = 60_000;

/** Who runs what. Worker 3 is the one never killed. */
const WORKERS: { tasks: string[]; queues?: string[] }[] = [
  { tasks: ["faults.a"], queues: ["q1"] },
  { tasks: ["faults.b"], queues: ["q1", "q2"] },
  { tasks: ["faults.a", "faults.b", "faults.c"] },
  { tasks: ["faults.c", "faults.a"], queues: ["q2"] },
];
/** Worker 3 (index 2) is never killed. */
const MORTAL = WORKERS.map((_, i) => i).filter((i) => i !== 2);
const TASKS = ["faults.a", "faults.b", "faults.c"];
const QUEUES = ["q1", "q2"];

let db: TestDb;

beforeAll(async () => {
  db = await createFaultDb("wakestress");
  await createCommitGuard(db);
});

afterAll(async () => {
  await killAll();
  await db?.close();
});

const pickOne = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
const pause = (min: number, max: number) =>
  new Promise((resolve) => setTimeout(resolve, min + Math.random() * (max - min)));

interface Committed {
  ids: number[];
  /** Date.now() when COMMIT returned (or the library's enqueue resolved). */
  committedAt: number;
  /** The database clock just before COMMIT was sent (SQL path only). */
  beforeCommitAt: number | null;
  path: "sql" | "library";
}

const spawnedWorkers: { index: number; proc: PgwakeProcess }[] = [];

function startWorker(index: number): PgwakeProcess {
  const spec = WORKERS[index]!;
  const proc = spawnFixtureWorker(db, {
    tasks: spec.tasks,
    queues: spec.queues,
    concurrency: 16,
    leaseMs: 3_000,
    heartbeatMs: 1_000,
    pollIntervalMs: POLL_MS,
    maintenanceIntervalMs: 500,
  });
  spawnedWorkers.push({ index, proc });
  return proc;
}

test("no committed job waits for a lost wake-up, through rollbacks and kills (target 100 ms)", async () => {
  const workers = WORKERS.map((_, i) => startWorker(i));
  await Promise.all(workers.map((w) => fixtureWorkerId(w)));
  // Measured from when every worker waits for a wake-up (not while they start).
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          `SELECT count(DISTINCT w.pid)::int AS n FROM {{schema}}.waiters x
           JOIN {{schema}}.workers w ON w.id = x.worker_id`,
        )
      )[0]!.n === WORKERS.length,
    { timeoutMs: 30_000, message: "every worker waiting" },
  );
  // Warm-up: every task in every queue once, so first-use costs (compiling code paths, a first
  // side-table connection) are not counted as wake-up latency.
  const warmUp = await db.pgwake.enqueueMany(
    TASKS.flatMap((task) =>
      QUEUES.flatMap((queue) => [
        { task, queue },
        { task, queue },
      ]),
    ),
  );
  const warmUpIds = warmUp.map((r) => r.job.id);
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM {{schema}}.all_jobs WHERE id = ANY($1::bigint[]) AND status = 'completed'",
          [warmUpIds],
        )
      )[0]!.n === warmUpIds.length,
    { timeoutMs: 30_000, message: "warm-up jobs done" },
  );
  const q = (text: string) => text.replaceAll("{{schema}}", `"${db.schema}"`);
  const committed: Committed[] = [];
  const outcomes = { committed: 0, rolledBack: 0, failedAtCommit: 0, library: 0 };
  const startedAt = Date.now();
  const deadline = startedAt + DURATION_MS;
  // Submissions come in bursts with quiet between: a job left without a wake-up at the end of a
  // burst waits through the quiet (or for the poll) instead of being picked up by the next
  // submission's wake-up, so a lost wake-up shows.
  const untilNextBurst = () => {
    const cycle = BURST_MS + QUIET_MS;
    const t = (Date.now() - startedAt) % cycle;
    return t < BURST_MS ? 0 : cycle - t;
  };

  const submitter = async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      while (Date.now() < deadline) {
        const quiet = untilNextBurst();
        if (quiet > 0) {
          await pause(quiet, quiet);
          continue;
        }
        // Mostly one job per transaction: one job spends one token, so a token spent on the wrong
        // worker (or a dead one) leaves nobody woken for it.
        const count = Math.random() < 0.8 ? 1 : 2 + Math.floor(Math.random() * 2);
        const jobs = Array.from({ length: count }, () => ({
          task: pickOne(TASKS),
          queue: pickOne(QUEUES),
        }));
        const roll = Math.random();
        if (roll < 0.1) {
          const results = await db.pgwake.enqueueMany(jobs);
          committed.push({
            ids: results.map((r) => r.job.id),
            committedAt: Date.now(),
            beforeCommitAt: null,
            path: "library",
          });
          outcomes.library++;
        } else {
          await client.query("BEGIN");
          const { rows } = await client.query<{ id: string }>(
            q("SELECT (job).id FROM {{schema}}.enqueue_many($1::jsonb)"),
            [JSON.stringify(jobs)],
          );
          if (roll < 0.2) {
            await client.query("ROLLBACK");
            outcomes.rolledBack++;
          } else if (roll < 0.4) {
            await client.query(
              q("INSERT INTO {{schema}}.commit_guard (fail, wait_ms) VALUES (true, $1)"),
              [Math.floor(Math.random() * 30)],
            );
            await client.query("COMMIT").then(
              () => {
                throw new Error("the commit guard let a commit through");
              },
              () => {},
            );
            outcomes.failedAtCommit++;
          } else {
            const marker = await client.query<{ at: number }>(
              "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS at",
            );
            await client.query("COMMIT");
            committed.push({
              ids: rows.map((r) => Number(r.id)),
              committedAt: Date.now(),
              beforeCommitAt: marker.rows[0]!.at,
              path: "sql",
            });
            outcomes.committed++;
          }
        }
        await pause(0, 60);
      }
    } finally {
      await client.end();
    }
  };

  const kills: { worker: number; at: number }[] = [];
  const chaos = async () => {
    while (Date.now() < deadline - 1_000) {
      await pause(800, 2_500);
      const index = pickOne(MORTAL);
      const victim = workers[index]!;
      victim.child.kill("SIGKILL");
      await victim.exited;
      kills.push({ worker: index, at: Date.now() });
      await pause(100, 800);
      workers[index] = startWorker(index);
      await fixtureWorkerId(workers[index]!);
    }
  };

  await Promise.all([...Array.from({ length: SUBMITTERS }, submitter), chaos()]);

  const ids = committed.flatMap((c) => c.ids);
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM {{schema}}.all_jobs WHERE id = ANY($1::bigint[]) AND status = 'completed'",
          [ids],
        )
      )[0]!.n === ids.length,
    { timeoutMs: 60_000, intervalMs: 100, message: `all ${ids.length} committed jobs completed` },
  );
  const rows = await db.query<{
    id: number;
    entered: number;
    claimed: number;
    pid: number;
    recovered: boolean;
  }>(
    `SELECT j.id::int,
            (SELECT (extract(epoch FROM min(e.entered_at)) * 1000)::float8
             FROM {{schema}}.fault_executions e WHERE e.job_id = j.id) AS entered,
            (SELECT e.pid FROM {{schema}}.fault_executions e WHERE e.job_id = j.id
             ORDER BY e.id LIMIT 1) AS pid,
            (SELECT (extract(epoch FROM a.started_at) * 1000)::float8
             FROM {{schema}}.all_jobs a WHERE a.id = j.id) AS claimed,
            EXISTS (SELECT 1 FROM {{schema}}.job_events v WHERE v.job_id = j.id
                    AND v.kind IN ('lease_expired', 'returned')) AS recovered
     FROM unnest($1::bigint[]) AS j(id)`,
    [ids],
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  const latencies: number[] = [];
  const fromBeforeCommit: number[] = [];
  /** Database clock on both ends: COMMIT sent → claim statement began. The wake-up path alone. */
  const claimFromBeforeCommit: number[] = [];
  const late: { id: number; ms: number; claimedMs: number; path: string; worker: number }[] = [];
  const workerOf = new Map<number, number>();
  for (const w of spawnedWorkers) workerOf.set(w.proc.pid, w.index);
  let recovered = 0;
  for (const c of committed) {
    for (const id of c.ids) {
      const row = byId.get(id)!;
      if (row.recovered) {
        recovered++;
        continue;
      }
      const ms = row.entered - c.committedAt;
      latencies.push(ms);
      if (c.beforeCommitAt !== null) {
        fromBeforeCommit.push(row.entered - c.beforeCommitAt);
        claimFromBeforeCommit.push(row.claimed - c.beforeCommitAt);
      }
      if (ms > TARGET_MS) {
        late.push({
          id,
          ms: Math.round(ms),
          // From the commit to the claim (the database's clock for the claim).
          claimedMs: Math.round(row.claimed - c.committedAt),
          path: c.path,
          worker: workerOf.get(row.pid) ?? -1,
        });
      }
    }
  }
  // How late the workers' own timers ran meanwhile (a starved process delays its handlers).
  const live = workers.filter((w) => w.alive);
  for (const w of live) w.child.kill("SIGUSR2");
  const loopDelayMaxMs = await Promise.all(
    live.map((w) =>
      waitFor(() => w.logs().find((l) => l.msg === "fixture: state"), { timeoutMs: 5_000 })
        .then((l) => (l.eventLoopDelayMs as { max: number }).max)
        .catch(() => null),
    ),
  );
  // Rolled-back work must not have left a job behind.
  const [stray] = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM {{schema}}.all_jobs WHERE NOT (id = ANY($1::bigint[]))",
    [[...ids, ...warmUpIds]],
  );

  report("scenario 15: wake-up stress", {
    durationMs: DURATION_MS,
    pollMs: POLL_MS,
    transactions: outcomes,
    jobsCommitted: ids.length,
    kills: kills.length,
    jobsRecoveredAfterAKill: recovered,
    startAfterCommitMs: percentiles(latencies),
    startAfterCommitSentMs: percentiles(fromBeforeCommit),
    claimAfterCommitSentMs: percentiles(claimFromBeforeCommit),
    over100ms: late.slice(0, 20),
    overCount: late.length,
    strayJobs: stray!.n,
    workersEventLoopDelayMaxMs: loopDelayMaxMs,
  });

  expect(outcomes.committed).toBeGreaterThan(0);
  expect(outcomes.failedAtCommit).toBeGreaterThan(0);
  expect(kills.length).toBeGreaterThan(0);
  expect(stray!.n).toBe(0);
  // No lost wake-up: none waited anywhere near what one costs.
  expect(late.filter((l) => l.ms > LOST_MS)).toEqual([]);
  // The target holds for the bulk of them (the tail is this shared box's CPU: see the event-loop
  // delays and the claim times of the late ones in the report).
  expect(percentiles(latencies).p50).toBeLessThanOrEqual(TARGET_MS);
});
