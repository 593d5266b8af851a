import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  concurrencyAtStarts,
  createAudit,
  dbNow,
  maxInQueue,
  maxPerKey,
  openGate,
  runningNow,
} from "../flow/fixtures/audit.ts";
import { Fleet } from "../flow/fixtures/fleet.ts";
import { work } from "../flow/fixtures/tasks.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// Flow control with NOTIFY off (`notify: false`): workers find jobs and limit changes only by
// claiming (after their own completions, and on their poll, 300 ms here). The limits must hold
// all the same (issue 12, "Safety"). Two fleets of real worker processes: 4 workers of 16 slots
// for the limits, and 3 workers of 2 slots for a limit as large as the fleet.

let db: TestDb;
let fleet: Fleet | undefined;
let small: Fleet | undefined;

const POLL = {
  notify: false,
  pollIntervalMs: 300,
  leaseMs: 3_000,
  heartbeatMs: 500,
  maintenanceIntervalMs: 500,
  poolSize: 2,
} as const;

beforeAll(async () => {
  db = await createTestDb("flow_poll", { tasks: [work] });
  await createAudit(db);
});

afterAll(async () => {
  await Promise.all([fleet?.close(), small?.close()]);
  await db?.close();
});

async function submit(queue: string, jobs: { key?: string; payload: Record<string, unknown> }[]) {
  const done = await db.pgwake.untyped().enqueueMany(
    jobs.map((j) => ({
      task: "flow.work",
      queue,
      payload: j.payload,
      ...(j.key === undefined ? {} : { concurrencyKey: j.key }),
    })),
  );
  return done.map((d) => d.job.id);
}

const finished = async (queue: string) =>
  (
    await db.query<{ n: number }>(
      "SELECT count(*)::integer AS n FROM {{schema}}.all_jobs WHERE queue = $1 AND status IN ('completed', 'failed', 'cancelled')",
      [queue],
    )
  )[0]!.n;

describe("with NOTIFY off", () => {
  beforeAll(async () => {
    fleet = new Fleet(db, { ...POLL, concurrency: 16, queues: ["keys", "capped", "waiting"] });
    await fleet.start(4);
  });
  afterAll(async () => {
    await fleet?.close();
  });

  it("holds a per-key limit of 2 and a queue limit of 4 across 4 processes; waiting jobs stay pending with no attempt spent", {
    timeout: 90_000,
  }, async () => {
    await db.pgwake.setQueueLimits("keys", { keyConcurrency: 2 });
    await db.pgwake.setQueueLimits("capped", { concurrency: 4 });
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    await submit(
      "keys",
      Array.from({ length: 25 }, () =>
        keys.map((key) => ({ key, payload: { minMs: 20, maxMs: 80 } })),
      ).flat(),
    );
    await submit(
      "capped",
      Array.from({ length: 120 }, () => ({ payload: { minMs: 20, maxMs: 80 } })),
    );

    // While they run, the jobs held back wait as pending, their attempts untouched.
    let sampled = 0;
    await waitFor(
      async () => {
        const [row] = await db.query<{ pending: number; spent: number }>(
          `SELECT count(*) FILTER (WHERE status = 'pending')::integer AS pending,
                  count(*) FILTER (WHERE status <> 'running' AND attempts > 0)::integer AS spent
           FROM {{schema}}.jobs WHERE queue IN ('keys', 'capped')`,
        );
        expect(row!.spent).toBe(0);
        if (row!.pending > 0) sampled++;
        return (await finished("keys")) === 500 && (await finished("capped")) === 120;
      },
      { timeoutMs: 80_000, intervalMs: 100, message: "every job to finish" },
    );
    expect(sampled).toBeGreaterThan(0);

    const perKey = await maxPerKey(db, "keys");
    expect([...perKey].filter(([, n]) => n > 2)).toEqual([]);
    expect([...perKey.values()].filter((n) => n === 2).length).toBeGreaterThanOrEqual(15);
    expect(await maxInQueue(db, "capped")).toBe(4);
    const attempts = await db.query<{ attempts: number; n: number }>(
      "SELECT attempts, count(*)::integer AS n FROM {{schema}}.all_jobs WHERE queue IN ('keys', 'capped') GROUP BY 1",
    );
    expect(attempts).toEqual([{ attempts: 1, n: 620 }]);
  });

  it("applies a raised limit from the next poll", { timeout: 60_000 }, async () => {
    const queue = "waiting";
    await db.pgwake.setQueueLimits(queue, { concurrency: 1 });
    await submit(
      queue,
      Array.from({ length: 6 }, () => ({ payload: { ms: 0, gate: "waiting" } })),
    );
    try {
      await waitFor(async () => (await runningNow(db, queue)) === 1, {
        timeoutMs: 20_000,
        message: "the one job the limit allows",
      });
      await db.pgwake.setQueueLimits(queue, { concurrency: 3 });
      // No completion comes (the jobs wait for their gate): only the poll (300 ms) finds room.
      await waitFor(async () => (await runningNow(db, queue)) === 3, {
        timeoutMs: 10_000,
        intervalMs: 50,
        message: "3 jobs running after the limit was raised to 3",
      });
    } finally {
      await openGate(db, "waiting");
    }
    await waitFor(async () => (await finished(queue)) === 6, {
      timeoutMs: 30_000,
      message: "6 jobs to finish",
    });
    expect(await maxInQueue(db, queue)).toBe(3);
  });
});

describe("a limit lowered while jobs run (3 workers of 2 slots, NOTIFY off)", () => {
  beforeAll(async () => {
    small = new Fleet(db, { ...POLL, concurrency: 2, queues: ["lowered"] });
    await small.start(3);
  });

  /** Runs started after the limit went from 6 to 2, with how many were going then. */
  let lateStarts: { at: Date; n: number }[] = [];
  /** Whether all 6 slots of the limit ran handlers before it was lowered (the fleet has 6). */
  let reachedSix: boolean | undefined;

  it("aborts no running job, and every job completes", { timeout: 90_000 }, async () => {
    const queue = "lowered";
    await db.pgwake.setQueueLimits(queue, { concurrency: 6 });
    // Each job waits for a gate of its own, so the test decides which jobs end when.
    const ids = await submit(
      queue,
      Array.from({ length: 12 }, (_, i) => ({ payload: { ms: 0, gate: `lowered-${i}` } })),
    );
    const gateOf = new Map(ids.map((id, i) => [id, `lowered-${i}`]));
    const open = (jobIds: number[]) => openGate(db, ...jobIds.map((id) => gateOf.get(id)!));
    try {
      await waitFor(
        async () =>
          (
            await db.query<{ running: number }>(
              "SELECT running FROM {{schema}}.queues WHERE name = $1",
              [queue],
            )
          )[0]!.running === 6,
        { timeoutMs: 20_000, message: "6 slots of the queue held" },
      );
      // Each worker polls every 300 ms: a free slot anywhere is found at once.
      reachedSix = await waitFor(async () => (await runningNow(db, queue)) === 6, {
        timeoutMs: 5_000,
      }).then(
        () => true,
        () => false,
      );

      const lowered = await dbNow(db);
      await db.pgwake.setQueueLimits(queue, { concurrency: 2 });
      // One worker's running jobs end; the others' keep running (more than 2 in all).
      const byWorker = await db.query<{ worker_id: string; jobs: number[] }>(
        `SELECT worker_id, array_agg(job_id ORDER BY job_id)::integer[] AS jobs
         FROM {{schema}}.flow_audit WHERE queue = $1 AND ended_at IS NULL
         GROUP BY worker_id ORDER BY count(*) DESC, worker_id`,
        [queue],
      );
      const [first, ...others] = byWorker;
      expect(others.reduce((sum, w) => sum + w.jobs.length, 0)).toBeGreaterThanOrEqual(2);
      await open(first!.jobs);
      // Until the jobs that worker holds (the engine's view) are all started or gone.
      await waitFor(
        async () => {
          const [row] = await db.query<{ held: number; going: number }>(
            `SELECT (SELECT count(*)::integer FROM {{schema}}.jobs
                     WHERE queue = $1 AND status = 'running' AND lease_owner = $2) AS held,
                    (SELECT count(*)::integer FROM {{schema}}.flow_audit
                     WHERE queue = $1 AND worker_id = $2 AND ended_at IS NULL) AS going`,
            [queue, first!.worker_id],
          );
          return row!.held === row!.going && (await finished(queue)) >= first!.jobs.length;
        },
        { timeoutMs: 20_000, message: "the first worker's jobs to end and its claims to settle" },
      );
      lateStarts = await concurrencyAtStarts(db, queue, lowered);
    } finally {
      await open(ids);
    }

    await waitFor(async () => (await finished(queue)) === 12, {
      timeoutMs: 60_000,
      message: "12 jobs to finish",
    });
    // Nothing was aborted or retried: each job ran once, to its end.
    const runs = await db.query<{ aborted: string | null; ended: boolean }>(
      "SELECT aborted, ended_at IS NOT NULL AS ended FROM {{schema}}.flow_audit WHERE queue = $1",
      [queue],
    );
    expect(runs).toHaveLength(12);
    expect(runs.every((r) => r.ended && r.aborted === null)).toBe(true);
    const jobs = await db.query<{ status: string; attempts: number }>(
      "SELECT status, attempts FROM {{schema}}.all_jobs WHERE id = ANY ($1::bigint[])",
      [ids],
    );
    expect(jobs.every((j) => j.status === "completed" && j.attempts === 1)).toBe(true);
    // Once the gates all opened, at most 2 at a time.
    console.log(
      `lowered limit: all 6 slots running before: ${reachedSix}; runs going at each start after the limit went to 2 (while others still ran): ${lateStarts.map((s) => s.n).join(",") || "none"}`,
    );
  });

  // A worker claimed ahead of its free slots (its buffer) from a limited queue too: buffered jobs
  // held slots without running and started later whatever the limit was then. Found by these two
  // tests, fixed in 33c50f4 (a limited queue is claimed for free slots only).
  it("starts nothing above the lowered limit", () => {
    expect(reachedSix).toBeDefined();
    expect(lateStarts.filter((s) => s.n > 2)).toEqual([]);
  });

  it("runs 6 at once: a limit as large as the fleet is reached", () => {
    expect(reachedSix).toBe(true);
  });
});
