/**
 * Scenario 13 — fair queues, and every queue served (issue 10, bug 9).
 *
 * (a) One worker serves `bulk` and `critical` (library: `queues: [{ name: "critical", slots: 4 },
 *     { name: "bulk", slots: 12 }]`, 16 slots). With a large `bulk` backlog queued first, a
 *     `critical` job starts within one claim cycle (well under a second), not behind the backlog;
 *     and the per-queue slot caps hold (concurrent executions per queue counted from the handlers'
 *     own start and end records).
 * (b) A library worker with no `queues` serves a queue created after it started.
 * (c) `pgwake worker` with no `--queues` does too.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  enqueueBulk,
  fixtureWorkerId,
  killAll,
  pick,
  report,
  spawnFixtureWorker,
  spawnPgwake,
  workerArgs,
  workersRegistered,
} from "./helpers.ts";
import { peakConcurrencyByQueue, percentiles } from "./measure.ts";

const BULK = pick(100_000, 10_000);
const CRITICAL_SAMPLES = pick(20, 8);
const CRITICAL_BURST = pick(400, 120);
const CAPS = { critical: 4, bulk: 12 };
/** "One claim cycle": a claim, a handler start, a side-table insert, on a loaded 2-core box. */
const PROMPT_MS = 1_000;

let db: TestDb;

beforeAll(async () => {
  db = await createFaultDb("fairqueues");
});

afterEach(async () => {
  await killAll();
});

afterAll(async () => {
  await db?.close();
});

/** Submits one job and returns ms from submission to its handler's start (null: not in time). */
async function startLatency(
  queue: string,
  timeoutMs: number,
): Promise<{ ms: number | null; jobId: number; submitted: number }> {
  const submitted = Date.now();
  const { job } = await db.pgwake.enqueue("faults.record", { minMs: 1, maxMs: 2 }, { queue });
  const at = await waitFor(
    async () =>
      (
        await db.query<{ at: number }>(
          `SELECT (extract(epoch FROM entered_at) * 1000)::float8 AS at
           FROM {{schema}}.fault_executions WHERE job_id = $1`,
          [job.id],
        )
      )[0]?.at,
    { timeoutMs, intervalMs: 5, message: `job ${job.id} in ${queue} started` },
  ).catch(() => null);
  return { ms: at === null ? null : Math.round(at - submitted), jobId: job.id, submitted };
}

test("a critical job starts within a claim cycle behind a bulk backlog; slot caps hold", async () => {
  await enqueueBulk(db, "faults.record", BULK, { minMs: 5, maxMs: 15 }, { queue: "bulk" });
  const worker = spawnFixtureWorker(db, {
    tasks: ["faults.record"],
    queues: [
      { name: "critical", slots: CAPS.critical },
      { name: "bulk", slots: CAPS.bulk },
    ],
    concurrency: 16,
    leaseMs: 10_000,
    heartbeatMs: 2_000,
    pollIntervalMs: 2_000,
  });
  await fixtureWorkerId(worker);
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM {{schema}}.fault_executions WHERE queue = 'bulk'",
        )
      )[0]!.n >= 500,
    { timeoutMs: 60_000, intervalMs: 50, message: "the bulk backlog drains" },
  );

  const samples: { ms: number | null; bulkStartedBefore: number }[] = [];
  for (let i = 0; i < CRITICAL_SAMPLES; i++) {
    const { ms, jobId, submitted } = await startLatency("critical", 30_000);
    // Bulk jobs that started between the submission and the critical job's start.
    const [ahead] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM {{schema}}.fault_executions b
       WHERE b.queue = 'bulk' AND b.entered_at > to_timestamp($1::float8 / 1000)
         AND b.entered_at < (SELECT entered_at FROM {{schema}}.fault_executions WHERE job_id = $2)`,
      [submitted, jobId],
    );
    samples.push({ ms, bulkStartedBefore: ahead!.n });
  }
  const [left] = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM {{schema}}.jobs WHERE queue = 'bulk' AND status = 'pending'",
  );

  // A burst of critical work while bulk still has a backlog: both queues at their caps.
  await db.pgwake.enqueueMany(
    Array.from({ length: CRITICAL_BURST }, () => ({
      task: "faults.record",
      payload: { minMs: 20, maxMs: 40 },
      queue: "critical",
    })),
  );
  await waitFor(
    async () =>
      (
        await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM {{schema}}.fault_executions
           WHERE queue = 'critical' AND finished_at IS NOT NULL`,
        )
      )[0]!.n >=
      CRITICAL_SAMPLES + CRITICAL_BURST,
    { timeoutMs: 60_000, intervalMs: 50, message: "the critical burst completed" },
  );
  const peaks = await peakConcurrencyByQueue(db);
  const latencies = samples.map((s) => s.ms ?? Number.POSITIVE_INFINITY);

  report("scenario 13a: fair queues", {
    bulkBacklog: BULK,
    bulkStillPendingAfterSamples: left!.n,
    criticalStartMs: percentiles(latencies),
    bulkJobsStartedAheadOfCritical: samples.map((s) => s.bulkStartedBefore),
    caps: CAPS,
    peakConcurrentByQueue: peaks,
  });

  for (const s of samples) {
    expect(s.ms, JSON.stringify(samples)).not.toBeNull();
    expect(s.ms!, JSON.stringify(samples)).toBeLessThan(PROMPT_MS);
  }
  expect(left!.n).toBeGreaterThan(0); // the backlog was still there throughout
  expect(peaks.critical).toBeLessThanOrEqual(CAPS.critical);
  expect(peaks.bulk).toBeLessThanOrEqual(CAPS.bulk);
});

/** A worker that serves every queue is woken for a queue nobody had used when it started. */
async function newQueueServed(worker: { pid: number }, label: string) {
  await waitFor(
    async () =>
      (
        await db.query(
          `SELECT 1 FROM {{schema}}.waiters x JOIN {{schema}}.workers w ON w.id = x.worker_id
           WHERE w.pid = $1`,
          [worker.pid],
        )
      ).length > 0,
    { timeoutMs: 30_000, message: `${label} waiting for a wake-up` },
  ).catch(() => null);
  const queue = `fresh_${Math.random().toString(36).slice(2, 8)}`;
  const { ms } = await startLatency(queue, 45_000);
  report(`scenario 13: every queue served (${label})`, { queue, startMs: ms, pollMs: 30_000 });
  return ms;
}

test("a library worker with no queues serves a queue created after it started", async () => {
  const worker = spawnFixtureWorker(db, {
    tasks: ["faults.record"],
    pollIntervalMs: 30_000,
    leaseMs: 10_000,
    heartbeatMs: 2_000,
  });
  await fixtureWorkerId(worker);
  const ms = await newQueueServed(worker, "library, queues omitted");
  expect(ms).not.toBeNull();
  expect(ms!).toBeLessThan(PROMPT_MS);
});

test("pgwake worker with no --queues serves a queue created after it started", async () => {
  const worker = spawnPgwake({
    command: "worker",
    url: db.url,
    schema: db.schema,
    args: workerArgs({ pollMs: 30_000, leaseMs: 10_000, heartbeatMs: 2_000 }),
  });
  await waitFor(() => workersRegistered(db, [worker.pid]), {
    timeoutMs: 30_000,
    message: "worker up",
  });
  const ms = await newQueueServed(worker, "pgwake worker, no --queues");
  expect(ms).not.toBeNull();
  expect(ms!).toBeLessThan(PROMPT_MS);
});
