/**
 * Scenario 16 — a frozen or cut-off worker does not stall the fleet (issue 10, bug 4).
 *
 * (a) Three workers drain a steady stream; one of them (maintenance every 100 ms, so it is often
 *     inside maintenance, and we aim at those moments: a maintenance statement in flight, or a
 *     transaction left open between statements) is SIGSTOPped again and again, at last past its
 *     lease holding jobs. Proves: the other workers' job starts never pause for more than a few
 *     seconds (longest gap between their job starts, and the longest wait from a job's submission
 *     to its start); the frozen worker's jobs are reaped soon after its lease ran out; resumed, it
 *     fences itself, its late outcomes are refused (an `outcome_ignored` event, or its own log
 *     line), no job completes twice, and every job completes.
 * (b) A worker cut off in the middle of maintenance statements (the fault proxy loses the answer
 *     of each one as it is sent, again and again) while another worker is frozen holding jobs:
 *     the others reap the frozen worker's jobs soon after its lease ran out, and keep claiming.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/faultProxy.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  enqueueBulk,
  fixtureWorkerId,
  killAll,
  pick,
  report,
  spawnFixtureWorker,
  statusCounts,
  withAppName,
} from "./helpers.ts";
import { longestStartGap, warnings } from "./measure.ts";

const LEASE_MS = 3_000;
const ROUNDS = pick(15, 3);
/** "A few seconds": the longest the others may pause; a stalled fleet waits for the frozen one. */
const STALL_BOUND_MS = 3_000;
/** From a lease's end to its jobs' `lease_expired` events: a reaper interval (300 ms) and load. */
const REAP_BOUND_MS = 3_000;
const MAINTENANCE_TEXT =
  "(pg_try_advisory_xact_lock|rotate_history|lower_waiting|queue_minutes\\s+WHERE minute)";
const MAINTENANCE_NAMES =
  /pgwake_(mark_expired_workers|reap_jobs|clean_waiters|rotate_history|release_keys|prune_queue_minutes)_/;

let db: TestDb;
let proxy: FaultProxy | undefined;

beforeAll(async () => {
  db = await createFaultDb("frozen");
});

afterEach(async () => {
  await killAll();
  await proxy?.close();
});

afterAll(async () => {
  await db?.close();
});

const pause = (min: number, max: number) =>
  new Promise((resolve) => setTimeout(resolve, min + Math.random() * (max - min)));

function worker(options: {
  maintenanceIntervalMs: number;
  url?: string;
  concurrency?: number;
  queues?: string[];
}) {
  return spawnFixtureWorker(db, {
    connectionString: options.url,
    queues: options.queues ?? ["default"],
    tasks: ["faults.record", "faults.longRun"],
    concurrency: options.concurrency ?? 8,
    leaseMs: LEASE_MS,
    heartbeatMs: 1_000,
    pollIntervalMs: 1_000,
    maintenanceIntervalMs: options.maintenanceIntervalMs,
    networkTimeoutMs: 3_000,
  });
}

/** Submits 10 quick jobs every 50 ms until stopped; returns how many. */
function stream(): { stop: () => Promise<number> } {
  let on = true;
  let sent = 0;
  const loop = (async () => {
    while (on) {
      await enqueueBulk(db, "faults.record", 10, { minMs: 1, maxMs: 5 });
      sent += 10;
      await pause(40, 60);
    }
  })();
  return {
    stop: async () => {
      on = false;
      await loop;
      return sent;
    },
  };
}

/**
 * Jobs a worker process holds now (any of its ids) with their attempts, and when its lease ends
 * (database clock).
 */
async function held(
  pid: number,
): Promise<{ ids: number[]; attempts: number[]; leaseEndsAt: number | null }> {
  const [row] = await db.query<{ ids: number[]; attempts: number[]; lease_ends: number | null }>(
    `SELECT coalesce(array_agg(j.id::int ORDER BY j.id) FILTER (WHERE j.id IS NOT NULL), '{}') AS ids,
            coalesce(array_agg(j.attempts ORDER BY j.id) FILTER (WHERE j.id IS NOT NULL), '{}') AS attempts,
            (extract(epoch FROM max(w.lease_expires_at)) * 1000)::float8 AS lease_ends
     FROM {{schema}}.workers w LEFT JOIN {{schema}}.jobs j
       ON j.lease_owner = w.id AND j.status = 'running'
     WHERE w.pid = $1`,
    [pid],
  );
  return { ids: row!.ids, attempts: row!.attempts, leaseEndsAt: row!.lease_ends };
}

/** Waits until every job of `ids` has a lease_expired event; ms after `fromMs` of the last one. */
async function reapedAfter(ids: number[], fromMs: number, timeoutMs: number) {
  return waitFor(
    async () => {
      const [row] = await db.query<{ n: number; last: number }>(
        `SELECT count(DISTINCT job_id)::int AS n, (extract(epoch FROM max(at)) * 1000)::float8 AS last
         FROM {{schema}}.job_events WHERE kind = 'lease_expired' AND job_id = ANY($1::bigint[])`,
        [ids],
      );
      return row!.n === ids.length ? Math.round(row!.last - fromMs) : null;
    },
    { timeoutMs, intervalMs: 20, message: `${ids.length} jobs reaped` },
  ).catch(() => null);
}

/**
 * The longest wait from a job's submission to its start, for jobs started by `pids` — leaving out
 * jobs the frozen worker had taken (reaped or handed back: they waited for it, by design).
 */
async function longestWait(pids: number[], fromMs: number): Promise<number> {
  const [row] = await db.query<{ ms: number }>(
    `SELECT coalesce(max(extract(epoch FROM e.started_at - j.created_at) * 1000), 0)::float8 AS ms
     FROM {{schema}}.fault_executions e JOIN {{schema}}.all_jobs j ON j.id = e.job_id
     WHERE e.pid = ANY($1::int[]) AND e.attempt = 1 AND j.created_at > to_timestamp($2::float8 / 1000)
       AND NOT EXISTS (SELECT 1 FROM {{schema}}.job_events v WHERE v.job_id = j.id
                       AND v.kind IN ('returned', 'lease_expired'))`,
    [pids, fromMs],
  );
  return Math.round(row!.ms);
}

/**
 * Waits up to 500 ms for the worker to be inside maintenance — a maintenance statement in flight,
 * or a transaction open between two statements (which the runtime must never leave open across a
 * round trip) — so that a freeze lands there. A statement takes a millisecond: caught or not, the
 * caller freezes. Returns whether it was caught.
 */
async function aimAtMaintenance(applicationName: string): Promise<boolean> {
  const until = Date.now() + 500;
  while (Date.now() < until) {
    const rows = await db.query(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = $1
         AND ((state = 'active' AND query ~ $2) OR state LIKE 'idle in transaction%')`,
      [applicationName, MAINTENANCE_TEXT],
    );
    if (rows.length > 0) return true;
  }
  return false;
}

async function allCompleted(timeoutMs: number): Promise<boolean> {
  return waitFor(
    async () => {
      const counts = await statusCounts(db);
      return Object.keys(counts).every((s) => s === "completed");
    },
    { timeoutMs, intervalMs: 100, message: "every job completed" },
  )
    .then(() => true)
    .catch(() => false);
}

test("(a) a worker frozen again and again, inside maintenance and past its lease, stalls nobody", async () => {
  const frozenApp = `pgwake-frozen-${db.schema}`;
  // It alone serves `frozen`: the jobs it holds at the last freeze are known (and only it reruns
  // them, so they complete only if it really recovered).
  const frozen = worker({
    maintenanceIntervalMs: 100,
    url: withAppName(db.url, frozenApp),
    queues: ["default", "frozen"],
  });
  const others = [worker({ maintenanceIntervalMs: 300 }), worker({ maintenanceIntervalMs: 300 })];
  const frozenIds = [await fixtureWorkerId(frozen)];
  await Promise.all(others.map((w) => fixtureWorkerId(w)));
  const otherPids = others.map((w) => w.pid);
  const jobs = stream();
  const chaosFrom = Date.now();

  const freezes: { ms: number; inMaintenance: boolean }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await pause(300, 800);
    const inMaintenance = await aimAtMaintenance(frozenApp);
    frozen.child.kill("SIGSTOP");
    const ms = 500 + Math.random() * 1_500;
    await pause(ms, ms);
    frozen.child.kill("SIGCONT");
    freezes.push({ ms: Math.round(ms), inMaintenance });
  }

  // The last freeze outlives the lease, with jobs held: they are reaped.
  await db.pgwake.enqueueMany(
    Array.from({ length: 4 }, () => ({
      task: "faults.longRun",
      queue: "frozen",
      payload: { ms: 60_000, retryMs: 10 },
    })),
  );
  await waitFor(async () => (await held(frozen.pid)).ids.length >= 4, {
    timeoutMs: 20_000,
    message: "the frozen worker holds its 4 long jobs",
  }).catch(() => null);
  const lastInMaintenance = await aimAtMaintenance(frozenApp);
  frozen.child.kill("SIGSTOP");
  const frozenAt = Date.now();
  const before = await held(frozen.pid);
  const reapMs =
    before.ids.length > 0 && before.leaseEndsAt !== null
      ? await reapedAfter(before.ids, before.leaseEndsAt, LEASE_MS + REAP_BOUND_MS + 10_000)
      : null;
  await waitFor(
    async () =>
      (await db.query("SELECT 1 FROM {{schema}}.workers WHERE pid = $1", [frozen.pid])).length ===
      0,
    { timeoutMs: 10_000, message: "the frozen worker's row reaped" },
  ).catch(() => null);
  frozen.child.kill("SIGCONT");
  const resumedAt = Date.now();
  await waitFor(
    () => warnings(frozen.logs(), /started over|lease not renewed/, resumedAt - 50)[0],
    {
      timeoutMs: 10_000,
      message: "the resumed worker fences itself",
    },
  ).catch(() => null);
  await pause(2_000, 2_000); // it runs on after its fresh start, with the others
  const sent = await jobs.stop();
  const chaosTo = Date.now();
  const gap = await longestStartGap(
    db,
    "e.pid = ANY($1::int[])",
    [otherPids],
    chaosFrom + 1_000,
    chaosTo,
  );
  const waitMs = await longestWait(otherPids, chaosFrom + 1_000);
  const done = await allCompleted(30_000);
  for (const l of frozen.logs()) if (l.workerId) frozenIds.push(String(l.workerId));
  const ids = [...new Set(frozenIds)];
  // The attempts the frozen worker held when it froze were reaped: none of them may complete.
  const [late] = await db.query<{ ignored: number; completedByFrozenAttempt: number }>(
    `SELECT (SELECT count(*)::int FROM {{schema}}.job_events
             WHERE kind = 'outcome_ignored' AND job_id = ANY($1::bigint[])) AS ignored,
            (SELECT count(*)::int FROM {{schema}}.job_history h
             JOIN unnest($1::bigint[], $2::int[]) AS x(id, attempt) ON h.id = x.id
             WHERE h.status = 'completed' AND h.attempts = x.attempt) AS "completedByFrozenAttempt"`,
    [before.ids, before.attempts],
  );
  const refusedInLog = warnings(
    frozen.logs(),
    /outcome ignored|completions ignored|job stopped|taken from it/,
    resumedAt - 50,
  ).length;
  const [dup] = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM (SELECT id FROM {{schema}}.job_history GROUP BY id HAVING count(*) > 1) d",
  );

  report("scenario 16a: frozen worker (SIGSTOP)", {
    rounds: ROUNDS,
    freezes,
    lastFreezeInMaintenance: lastInMaintenance,
    jobsSubmitted: sent,
    othersLongestStartGapMs: gap.gapMs,
    othersLongestSubmitToStartMs: waitMs,
    frozenHeldAtLastFreeze: before.ids.length,
    reapedAfterLeaseEndMs: reapMs,
    resumedAfterMs: resumedAt - frozenAt,
    lateOutcomesIgnoredEvents: late!.ignored,
    lateOutcomesRefusedInItsLog: refusedInLog,
    reapedAttemptsThatCompletedAnyway: late!.completedByFrozenAttempt,
    jobsCompletedTwice: dup!.n,
    allCompleted: done,
    statuses: await statusCounts(db),
    frozenWorkerIds: ids,
  });

  expect(gap.gapMs).toBeLessThanOrEqual(STALL_BOUND_MS);
  expect(waitMs).toBeLessThanOrEqual(STALL_BOUND_MS);
  expect(dup!.n).toBe(0);
  expect(late!.completedByFrozenAttempt).toBe(0);
  expect(before.ids.length).toBeGreaterThanOrEqual(4);
  expect(reapMs).not.toBeNull();
  expect(reapMs!).toBeLessThanOrEqual(REAP_BOUND_MS);
  expect(late!.ignored + refusedInLog).toBeGreaterThan(0);
  expect(done, frozen.output().slice(-3_000)).toBe(true);
});

test("(b) a worker cut off inside maintenance statements delays nobody's reaping", async () => {
  const target = new URL(db.url);
  proxy = await startFaultProxy({
    target: { host: target.hostname, port: Number(target.port || 5432) },
  });
  const cutApp = `pgwake-cut-${db.schema}`;
  const cut = worker({
    maintenanceIntervalMs: 100,
    url: withAppName(proxy.via(db.url), cutApp),
  });
  const others = [worker({ maintenanceIntervalMs: 300 }), worker({ maintenanceIntervalMs: 300 })];
  const victim = worker({ maintenanceIntervalMs: 0, concurrency: 4, queues: ["victim"] });
  await Promise.all([cut, ...others, victim].map((w) => fixtureWorkerId(w)));
  // Every maintenance statement the cut-off worker sends reaches the server; its answer is lost.
  let cutsFired = 0;
  proxy.on("trigger", () => {
    cutsFired++;
  });
  const trigger = proxy.addTrigger({
    direction: "toServer",
    when: { message: ["P", "B"], contains: MAINTENANCE_NAMES },
    cut: "after",
    switchTo: { silence: "blackhole", direction: "toClient" },
    times: Number.POSITIVE_INFINITY,
  });
  await waitFor(() => cutsFired >= 1, { timeoutMs: 10_000, message: "maintenance cut off" });

  // The victim takes long jobs, then freezes holding them.
  await db.pgwake.enqueueMany(
    Array.from({ length: 4 }, () => ({
      task: "faults.longRun",
      queue: "victim",
      payload: { ms: 60_000, retryMs: 10 },
    })),
  );
  await waitFor(async () => (await held(victim.pid)).ids.length === 4, {
    timeoutMs: 30_000,
    message: "the victim holds 4 jobs",
  }).catch(() => null);
  const jobs = stream();
  const chaosFrom = Date.now();
  victim.child.kill("SIGSTOP");
  const before = await held(victim.pid);
  const reapMs =
    before.ids.length > 0 && before.leaseEndsAt !== null
      ? await reapedAfter(before.ids, before.leaseEndsAt, LEASE_MS + REAP_BOUND_MS + 15_000)
      : null;
  const sent = await jobs.stop();
  const gap = await longestStartGap(
    db,
    "e.pid = ANY($1::int[]) AND e.task = 'faults.record'",
    [others.map((w) => w.pid)],
    chaosFrom + 500,
    Date.now(),
  );
  trigger.remove();
  proxy.heal();

  report("scenario 16b: worker cut off inside maintenance", {
    maintenanceStatementsCut: cutsFired,
    victimHeld: before.ids.length,
    reapedAfterLeaseEndMs: reapMs,
    jobsSubmitted: sent,
    othersLongestStartGapMs: gap.gapMs,
  });
  expect(cutsFired).toBeGreaterThan(0);
  expect(before.ids.length).toBe(4);
  expect(reapMs).not.toBeNull();
  expect(reapMs!).toBeLessThanOrEqual(REAP_BOUND_MS);
  expect(gap.gapMs).toBeLessThanOrEqual(STALL_BOUND_MS);
});
