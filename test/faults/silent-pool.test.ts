/**
 * Scenario 8 — a silent pool (issue 10, bug 1). A busy worker drains a large backlog through the
 * fault proxy; its pool's connections (not its LISTEN connection) go silent — no RST, no FIN,
 * bytes simply vanish, also on connections it opens meanwhile — then the network heals.
 *
 * Proves: the worker notices within its network timeout and says so in its log; its heartbeat does
 * not keep it looking healthy while it cannot claim (its `workers` row stops being renewed and its
 * lease runs out); after the heal it claims again within seconds and keeps draining; no job ran
 * twice at the same time; and a SIGTERM during a second silence ends the process within its grace
 * period plus a bounded margin.
 *
 * The handlers write their side effects straight to Postgres, around the proxy.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { applicationNameIs, type FaultProxy, startFaultProxy } from "../helpers/faultProxy.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  enqueueBulk,
  fixtureWorkerId,
  killAll,
  pick,
  report,
  spawnFixtureWorker,
} from "./helpers.ts";
import { overlappingExecutions, warnings } from "./measure.ts";
import { silence } from "./silence.ts";

const BACKLOG = pick(100_000, 8_000);
const LEASE_MS = 3_000;
const HEARTBEAT_MS = 1_000;
/**
 * Full profile: the library's default network timeout (15 s) and a silence longer than it, so the
 * default detection is seen while the network is still silent. CI: a 3 s timeout, an 8 s silence.
 */
const NETWORK_TIMEOUT_MS = pick(undefined, 3_000);
const EFFECTIVE_TIMEOUT_MS = NETWORK_TIMEOUT_MS ?? 15_000;
const SILENCE_MS = pick(20_000, 6_000);
const GRACE_MS = 2_000;
/** Jobs that must start before the silence, and complete after the heal. */
const AFTER = pick(500, 200);
/** The worker's shutdown margin after grace (src/worker/worker.ts), and a process exit. */
const SHUTDOWN_MARGIN_MS = 3_000;
/** This is a shared 2-core box: a few seconds of slack on every bound. */
const SLACK_MS = 4_000;

let db: TestDb;
let proxy: FaultProxy;

beforeAll(async () => {
  db = await createFaultDb("silentpool");
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

const startsSince = async (pid: number, sinceMs: number) =>
  (
    await db.query<{ n: number; first: number | null }>(
      `SELECT count(*)::int AS n, (extract(epoch FROM min(started_at)) * 1000)::float8 AS first
       FROM {{schema}}.fault_executions WHERE pid = $1 AND started_at > to_timestamp($2::float8 / 1000)`,
      [pid, sinceMs],
    )
  )[0]!;

test("a silent pool is detected, fenced, and claiming resumes within seconds of the heal", async () => {
  await enqueueBulk(db, "faults.record", BACKLOG, { minMs: 1, maxMs: 5 });
  const worker = spawnFixtureWorker(db, {
    connectionString: proxy.via(db.url),
    tasks: ["faults.record"],
    concurrency: 8,
    leaseMs: LEASE_MS,
    heartbeatMs: HEARTBEAT_MS,
    pollIntervalMs: 1_000,
    maintenanceIntervalMs: 1_000,
    networkTimeoutMs: NETWORK_TIMEOUT_MS,
    graceMs: GRACE_MS,
  });
  await fixtureWorkerId(worker);
  const busySince = Date.now();
  await waitFor(async () => (await startsSince(worker.pid, busySince)).n >= AFTER, {
    timeoutMs: 60_000,
    intervalMs: 50,
    message: "the worker drains the backlog",
  });

  // ---- the pool goes silent ----------------------------------------------------------------
  const cut = silence(proxy, applicationNameIs("pgwake-worker"));
  const samples: { at: number; expired: boolean; lastSeen: number | null; reaped: boolean }[] = [];
  while (Date.now() - cut.since < SILENCE_MS) {
    const [row] = await db.query<{ expired: boolean; last_seen: number | null; reaped: boolean }>(
      `SELECT coalesce(bool_and(lease_expires_at < now()), true) AS expired,
              (extract(epoch FROM max(last_seen_at)) * 1000)::float8 AS last_seen,
              coalesce(bool_or(reaped_at IS NOT NULL), false) AS reaped
       FROM {{schema}}.workers WHERE pid = $1`,
      [worker.pid],
    );
    samples.push({
      at: Date.now(),
      expired: row!.expired,
      lastSeen: row!.last_seen,
      reaped: row!.reaped,
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const beforeHeal = await startsSince(worker.pid, cut.since + 1_000);
  cut.heal();
  const healedAt = Date.now();

  // ---- after the heal ------------------------------------------------------------------------
  const resumed = await waitFor(
    async () => {
      const s = await startsSince(worker.pid, healedAt);
      return s.n > 0 ? s : null;
    },
    { timeoutMs: 60_000, intervalMs: 20, message: "a job started after the heal" },
  ).catch(() => null);
  const resumedMs = resumed ? Math.round(resumed.first! - healedAt) : null;
  // Not only started: their outcomes are written (the database says completed).
  const completedSince = async (sinceMs: number) =>
    (
      await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM {{schema}}.job_history
         WHERE status = 'completed' AND finished_at > to_timestamp($1::float8 / 1000)`,
        [sinceMs],
      )
    )[0]!.n;
  const completedAfterHeal = await waitFor(
    async () => {
      const n = await completedSince(healedAt);
      return n >= AFTER ? n : null;
    },
    { timeoutMs: 30_000, intervalMs: 50, message: `${AFTER} jobs completed after the heal` },
  ).catch(async () => completedSince(healedAt));
  const logs = worker.logs();
  const during = warnings(logs, undefined, cut.since);
  const firstWarning = during[0];
  const firstFailure = warnings(logs, /claim failed|heartbeat failed/, cut.since)[0];
  const fence = warnings(logs, /lease not renewed/, cut.since)[0];
  const lastSeenMax = Math.max(...samples.map((s) => s.lastSeen ?? 0));
  const expiredWhileSilent = samples.some((s) => s.expired);

  // ---- SIGTERM during a second silence --------------------------------------------------------
  const second = silence(proxy, applicationNameIs("pgwake-worker"));
  await waitFor(() => warnings(worker.logs(), /lease not renewed/, second.since)[0], {
    timeoutMs: LEASE_MS + SLACK_MS,
    message: "the worker fenced itself in the second silence",
  });
  const termAt = Date.now();
  worker.child.kill("SIGTERM");
  const exit = await waitFor(() => (worker.alive ? null : worker.exited), {
    timeoutMs: GRACE_MS + SHUTDOWN_MARGIN_MS + 20_000,
    intervalMs: 50,
    message: "exit after SIGTERM",
  }).catch(() => null);
  const exitMs = exit ? exit.at - termAt : null;
  second.heal();

  const overlaps = await overlappingExecutions(db);
  report("scenario 8: silent pool connection", {
    backlog: BACKLOG,
    networkTimeoutMs: EFFECTIVE_TIMEOUT_MS,
    silenceMs: SILENCE_MS,
    connectionsSilenced: cut.silenced,
    firstWarningAfterMs: firstWarning ? firstWarning.time - cut.since : null,
    firstWarning: firstWarning?.msg ?? null,
    fencedAfterMs: fence ? fence.time - cut.since : null,
    firstStatementTimeoutAfterMs: firstFailure ? firstFailure.time - cut.since : null,
    jobsStartedDuringSilence: beforeHeal.n,
    lastHeartbeatVsSilenceMs: lastSeenMax - cut.since,
    leaseSeenExpiredWhileSilent: expiredWhileSilent,
    reapedWhileSilent: samples.some((s) => s.reaped),
    firstJobAfterHealMs: resumedMs,
    completedAfterHeal,
    startedOverUnderNewId: warnings(logs, /started over/, cut.since).length,
    overlappingExecutions: overlaps.length,
    sigtermDuringSilence: { exitCode: exit?.code ?? "still running", exitMs },
  });

  // It noticed, and said so, within its network timeout.
  expect(firstWarning, worker.output()).toBeDefined();
  expect(firstFailure, "a statement on the silent pool failed").toBeDefined();
  expect(firstFailure!.time - cut.since).toBeLessThanOrEqual(
    EFFECTIVE_TIMEOUT_MS + 1_000 + SLACK_MS,
  );
  // Nothing claimed while silent, and nothing renewed its lease either: no heartbeat reached the
  // database after the silence began, and the fleet saw its lease run out.
  expect(beforeHeal.n).toBe(0);
  expect(lastSeenMax).toBeLessThanOrEqual(cut.since);
  expect(expiredWhileSilent).toBe(true);
  // Claiming again within seconds of the heal, and for good.
  expect(resumedMs, "a job started after the heal").not.toBeNull();
  expect(resumedMs!).toBeLessThanOrEqual(EFFECTIVE_TIMEOUT_MS + SLACK_MS);
  expect(completedAfterHeal).toBeGreaterThanOrEqual(AFTER);
  expect(overlaps).toEqual([]);
  // SIGTERM while silent: out within grace + margin.
  expect(exitMs, worker.output()).not.toBeNull();
  expect(exitMs!).toBeLessThanOrEqual(GRACE_MS + SHUTDOWN_MARGIN_MS + SLACK_MS);
  expect(exit!.code, worker.output()).toBe(0);
});
