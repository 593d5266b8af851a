/**
 * Scenario 9 — a silent LISTEN connection (issue 10, bug 2). An idle worker with a slow fallback
 * poll; its LISTEN connection (only that one: the pool keeps working) goes silent through the
 * fault proxy — no RST, no FIN, bytes vanish, also on the connections it opens to replace it —
 * then the network heals.
 *
 * Proves: the liveness check notices within its bound and the worker's `workers` row says it is
 * not listening while cut off; a job submitted during the silence (its notification lost) and a
 * job submitted at the heal both start within seconds of the heal (the listener reconnects and the
 * worker claims at once), not at the poll; and notifications work again.
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
} from "./helpers.ts";
import { warnings } from "./measure.ts";
import { silence } from "./silence.ts";

/** Far longer than any bound below: a job that waited for the poll shows. */
const POLL_MS = 30_000;
/** Full profile: the library's default liveness interval (5 s). CI: 1.5 s. */
const LIVENESS_MS = pick(undefined, 1_500);
const EFFECTIVE_LIVENESS_MS = LIVENESS_MS ?? 5_000;
const HEARTBEAT_MS = 1_000;
/** At least this long silent (longer if the worker has not noticed yet). */
const SILENCE_MS = pick(8_000, 6_000);
/** A check every `livenessMs` that may take `livenessMs` + 1 s, then a heartbeat to say so. */
const DETECT_BOUND_MS = 2 * EFFECTIVE_LIVENESS_MS + 1_000 + HEARTBEAT_MS;
const SLACK_MS = 4_000;

let db: TestDb;
let proxy: FaultProxy;

beforeAll(async () => {
  db = await createFaultDb("silentlisten");
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

const listening = async (pid: number) =>
  (
    await db.query<{ listening: boolean }>(
      "SELECT listening FROM {{schema}}.workers WHERE pid = $1 AND lease_expires_at > now()",
      [pid],
    )
  )[0]?.listening;

/** Submits a job and waits for its handler to start; ms from submission to the handler. */
async function startLatency(timeoutMs: number): Promise<number | null> {
  const submitted = Date.now();
  const { job } = await db.pgwake.enqueue("faults.a", {});
  const at = await startedAt(job.id, timeoutMs);
  return at === null ? null : Math.round(at - submitted);
}

/** When the handler of a job was entered (ms), waiting at most `timeoutMs`. */
async function startedAt(jobId: number, timeoutMs: number): Promise<number | null> {
  const job = { id: jobId };
  try {
    const [row] = await waitFor(
      () =>
        db
          .query<{ at: number }>(
            `SELECT (extract(epoch FROM entered_at) * 1000)::float8 AS at
             FROM {{schema}}.fault_executions WHERE job_id = $1`,
            [job.id],
          )
          .then((rows) => (rows.length ? rows : null)),
      { timeoutMs, intervalMs: 5, message: `job ${job.id} started` },
    );
    return row!.at;
  } catch {
    return null;
  }
}

test("a silent LISTEN connection is noticed, reported, and replaced: no job waits for the poll", async () => {
  const worker = spawnFixtureWorker(db, {
    connectionString: proxy.via(db.url),
    tasks: ["faults.a"],
    concurrency: 4,
    leaseMs: 3_000,
    heartbeatMs: HEARTBEAT_MS,
    pollIntervalMs: POLL_MS,
    livenessMs: LIVENESS_MS,
    networkTimeoutMs: pick(undefined, 3_000),
  });
  await fixtureWorkerId(worker);
  await waitFor(() => listening(worker.pid), { timeoutMs: 30_000, message: "worker listening" });
  const before = await startLatency(POLL_MS * 2);

  const cut = silence(proxy, applicationNameIs("pgwake-listener"));
  // Submitted while the listener is cut off: its notification is lost (and with it, before the
  // fixes, the worker's one-shot token). It must start soon after the heal, not at the poll.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const { job: duringSilence } = await db.pgwake.enqueue("faults.a", {});
  const notListening = await waitFor(
    async () => ((await listening(worker.pid)) === false ? Date.now() : null),
    {
      timeoutMs: DETECT_BOUND_MS + SLACK_MS,
      intervalMs: 50,
      message: "the row says not listening",
    },
  ).catch(() => null);
  const left = SILENCE_MS - (Date.now() - cut.since);
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  const silentMs = Date.now() - cut.since;
  cut.heal();

  const healedAt = Date.now();
  const duringSilenceAt = await startedAt(duringSilence.id, POLL_MS * 2);
  // At once after the heal: the listener may still be on its way back.
  const afterHeal = await startLatency(POLL_MS * 2);
  await waitFor(() => listening(worker.pid), { timeoutMs: 30_000, message: "listening again" });
  const afterReconnect = await startLatency(POLL_MS * 2);

  const logs = worker.logs();
  report("scenario 9: silent LISTEN connection", {
    livenessMs: EFFECTIVE_LIVENESS_MS,
    pollMs: POLL_MS,
    silentMs,
    connectionsSilenced: cut.silenced,
    startBeforeCutMs: before,
    rowNotListeningAfterMs: notListening === null ? null : notListening - cut.since,
    detectBoundMs: DETECT_BOUND_MS,
    listenerWarnings: warnings(logs, /listener/, cut.since).map((l) => l.msg),
    jobSubmittedDuringSilenceStartedAfterHealMs:
      duringSilenceAt === null ? null : Math.round(duringSilenceAt - healedAt),
    jobSubmittedAtHealStartedAfterMs: afterHeal,
    jobAfterReconnectStartedAfterMs: afterReconnect,
  });

  expect(before).not.toBeNull();
  expect(notListening, worker.output()).not.toBeNull();
  expect(notListening! - cut.since).toBeLessThanOrEqual(DETECT_BOUND_MS + SLACK_MS);
  expect(warnings(logs, /listener/, cut.since).length).toBeGreaterThan(0);
  // In seconds, not at the poll (22.5–37.5 s): the listener's reconnection claims at once.
  expect(duringSilenceAt).not.toBeNull();
  expect(duringSilenceAt! - healedAt).toBeLessThan(EFFECTIVE_LIVENESS_MS + SLACK_MS);
  expect(afterHeal).not.toBeNull();
  expect(afterHeal!).toBeLessThan(EFFECTIVE_LIVENESS_MS + SLACK_MS);
  expect(afterReconnect).not.toBeNull();
  expect(afterReconnect!).toBeLessThan(1_000);
});
