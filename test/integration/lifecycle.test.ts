import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type AnyTaskDefinition,
  defineTask,
  type Job,
  PermanentError,
  PgwakeError,
  type SerializedError,
  type Worker,
} from "../../src/index.ts";
import { completeJobs } from "../../src/jobs/complete.ts";
import { failJobs } from "../../src/jobs/fail.ts";
import { heartbeat } from "../../src/jobs/heartbeat.ts";
import { reapExpiredWorkers } from "../../src/jobs/maintenance.ts";
import { returnJobs } from "../../src/jobs/returnJobs.ts";
import { type Engine, engineFor } from "../fixtures/engine.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { deferred, waitFor } from "../helpers/wait.ts";

// Jobs of the task "manual" are driven by hand through the engine's SQL modules; no Worker has
// a handler for it, so none of them can interfere.
const MANUAL = { tasks: ["manual"] };
const boom: SerializedError = { name: "Error", message: "boom" };

let flakyCalls = 0;
const flaky = defineTask({
  name: "flaky",
  maxAttempts: 3,
  backoff: { baseMs: 20, factor: 2, maxMs: 50 },
  handler: () => {
    flakyCalls++;
    throw new Error(`flaky failure ${flakyCalls}`);
  },
});
const permanent = defineTask({
  name: "permanent",
  maxAttempts: 5,
  handler: () => {
    throw new PermanentError("this payload can never work");
  },
});
const started = deferred<AbortSignal>();
const waits = defineTask({
  name: "waits",
  handler: (_payload, ctx) => {
    started.resolve(ctx.signal);
    return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve("aborted")));
  },
});

describe("job lifecycle", () => {
  let db: TestDb;
  let engine: Engine;
  const workers: Worker[] = [];

  beforeAll(async () => {
    db = await createTestDb("lifecycle", {
      tasks: [flaky, permanent, waits],
      unknownTasks: "warn",
    });
    engine = engineFor(db);
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop({ graceMs: 1_000 })));
  });
  afterAll(async () => {
    await db?.close();
  });

  const enqueue = async (options: { maxAttempts?: number; delayMs?: number } = {}): Promise<Job> =>
    (await db.pgwake.enqueue("manual", { n: 1 }, options)).job;

  /** Claims one job; with `expire`, the worker's lease then ends at once (it "stopped"). */
  const claimOne = async (workerId: string, leaseMs = 30_000): Promise<Job> => {
    const jobs = await engine.claim(workerId, { ...MANUAL, limit: 1, leaseMs: 30_000 });
    expect(jobs).toHaveLength(1);
    if (leaseMs < 1_000) await engine.expireLease(workerId);
    return jobs[0]!;
  };

  /** Waits until the lease of the worker holding `id` is over by the database's clock. */
  const leaseExpired = (id: number) =>
    waitFor(
      async () =>
        (
          await db.query<{ expired: boolean }>(
            `SELECT w.lease_expires_at < now() AS expired
             FROM {{schema}}.jobs j JOIN {{schema}}.workers w ON w.id = j.lease_owner
             WHERE j.id = $1`,
            [id],
          )
        )[0]?.expired,
      { message: `lease of job ${id} to expire` },
    );
  /** Takes back the jobs of workers whose lease ran out (the reaper's two steps). */
  const reap = () => reapExpiredWorkers(db.pool, engine.sql);

  const startWorker = async (tasks: AnyTaskDefinition[]) => {
    const worker = db.pgwake.worker({
      tasks,
      pollIntervalMs: 100,
      maintenanceIntervalMs: 0,
      flushDelayMs: 1,
    });
    workers.push(worker);
    await worker.start();
    // Cancellations reach a running job through the listener (else the next heartbeat).
    await waitFor(() => worker.listening, { message: "the worker's listener" });
    return worker;
  };

  it("pending → running → completed", async () => {
    const job = await enqueue();
    expect(job).toMatchObject({
      status: "pending",
      attempts: 0,
      leaseOwner: null,
      startedAt: null,
    });

    const claimed = await claimOne("w1", 30_000);
    expect(claimed).toMatchObject({ id: job.id, status: "running", attempts: 1, leaseOwner: "w1" });
    // The lease is the worker's, 30 s from its registration (just before this claim).
    const held = await engine.job(job.id);
    const leaseMs = held.leaseExpiresAt!.getTime() - held.startedAt!.getTime();
    expect(leaseMs).toBeGreaterThan(29_000);
    expect(leaseMs).toBeLessThanOrEqual(30_000);

    const done = await completeJobs(db.pool, engine.sql, "w1", [
      { id: job.id, attempt: 1, result: { ok: true } },
    ]);
    expect([...done]).toEqual([job.id]);
    const after = await engine.job(job.id);
    expect(after).toMatchObject({ status: "completed", attempts: 1, result: { ok: true } });
    expect(after.finishedAt).toBeInstanceOf(Date);
    expect(after.leaseExpiresAt).toBeNull();
    // The happy path writes no event row at all.
    expect(await engine.events(job.id)).toEqual([]);

    // A completed job is completed once: a second completion is refused and recorded.
    const again = await completeJobs(db.pool, engine.sql, "w1", [
      { id: job.id, attempt: 1, result: { ok: "twice" } },
    ]);
    expect(again.size).toBe(0);
    expect((await engine.job(job.id)).result).toEqual({ ok: true });
    expect((await engine.events(job.id)).map((e) => e.kind)).toEqual(["outcome_ignored"]);
  });

  it("a failed attempt is retried after its backoff, decided by the database clock", async () => {
    const job = await enqueue({ maxAttempts: 2 });
    await claimOne("w1");

    // In one transaction now() is fixed: run_at must be exactly now() + the delay.
    const client = await db.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query("BEGIN");
      const [{ now }] = (await client.query<{ now: Date }>("SELECT now()")).rows as [{ now: Date }];
      const failed = await failJobs(client, engine.sql, "w1", [
        { id: job.id, attempt: 1, error: boom, delayMs: 5_000, permanent: false },
      ]);
      await client.query("COMMIT");
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ id: job.id, status: "retrying" });
      expect(failed[0]!.runAt.getTime()).toBe(now.getTime() + 5_000);
    } catch (error) {
      broken = error as Error;
      throw error;
    } finally {
      client.release(broken);
    }

    const retrying = await engine.job(job.id);
    expect(retrying).toMatchObject({ status: "retrying", attempts: 1, lastError: boom });
    expect(retrying.leaseExpiresAt).toBeNull();
    expect(retrying.finishedAt).toBeNull();
    // Not claimable before its run_at.
    expect(await engine.claim("w2", MANUAL)).toEqual([]);

    const events = await engine.events(job.id);
    expect(events.map((e) => e.kind)).toEqual(["attempt_failed", "retry_scheduled"]);
    expect(events[0]).toMatchObject({ attempt: 1, worker_id: "w1", message: "boom" });
    expect(events[0]!.data).toMatchObject({ error: boom });
    expect(events[1]!.data).toMatchObject({ delayMs: 5_000 });

    // Time passes (by the database's clock): the retry becomes claimable.
    await db.query("UPDATE {{schema}}.jobs SET run_at = now() WHERE id = $1", [job.id]);
    const second = await claimOne("w2");
    expect(second).toMatchObject({ attempts: 2, leaseOwner: "w2" });

    // The last attempt fails: the job is dead.
    const final = await failJobs(db.pool, engine.sql, "w2", [
      {
        id: job.id,
        attempt: 2,
        error: { name: "Error", message: "again" },
        delayMs: 5_000,
        permanent: false,
      },
    ]);
    expect(final[0]).toMatchObject({ status: "failed" });
    const dead = await engine.job(job.id);
    expect(dead).toMatchObject({ status: "failed", attempts: 2, lastError: { message: "again" } });
    expect(dead.finishedAt).toBeInstanceOf(Date);
    const kinds = (await engine.events(job.id)).map((e) => [e.kind, e.attempt, e.message]);
    expect(kinds.slice(2)).toEqual([
      ["attempt_failed", 2, "again"],
      ["failed", 2, "out of attempts"],
    ]);
    expect(await engine.claim("w3", MANUAL)).toEqual([]);
  });

  it("a worker retries a failing handler with backoff, then fails it after maxAttempts", async () => {
    flakyCalls = 0;
    await startWorker([flaky]);
    const { job } = await db.pgwake.enqueue("flaky", {});
    expect(job.maxAttempts).toBe(3);
    const dead = await waitFor(
      async () => {
        const j = await engine.job(job.id);
        return j.status === "failed" ? j : null;
      },
      { timeoutMs: 20_000, message: "flaky job to fail" },
    );
    expect(flakyCalls).toBe(3);
    expect(dead.attempts).toBe(3);
    expect(dead.lastError).toMatchObject({ name: "Error", message: "flaky failure 3" });
    expect(dead.lastError?.stack).toContain("flaky failure 3");
    const events = await engine.events(job.id);
    expect(events.map((e) => `${e.kind}:${e.attempt}`)).toEqual([
      "attempt_failed:1",
      "retry_scheduled:1",
      "attempt_failed:2",
      "retry_scheduled:2",
      "attempt_failed:3",
      "failed:3",
    ]);
    // Backoff is capped at 50 ms by the task.
    for (const e of events.filter((x) => x.kind === "retry_scheduled")) {
      expect(e.data?.delayMs as number).toBeLessThanOrEqual(50);
    }
  });

  it("PermanentError fails the job at once", async () => {
    await startWorker([permanent]);
    const { job } = await db.pgwake.enqueue("permanent", {});
    const dead = await waitFor(
      async () => {
        const j = await engine.job(job.id);
        return j.status === "failed" ? j : null;
      },
      { timeoutMs: 20_000, message: "permanent failure" },
    );
    expect(dead).toMatchObject({ attempts: 1, maxAttempts: 5 });
    expect(dead.lastError).toMatchObject({
      name: "PermanentError",
      message: "this payload can never work",
    });
    const events = await engine.events(job.id);
    expect(events.map((e) => [e.kind, e.message])).toEqual([
      ["attempt_failed", "this payload can never work"],
      ["failed", "failed permanently"],
    ]);
  });

  it("a worker that lost its lease cannot complete, fail or extend the job", async () => {
    const job = await enqueue({ maxAttempts: 5 });
    await claimOne("zombie", 1);
    await leaseExpired(job.id);

    const reaped = await reap();
    expect(reaped).toMatchObject({ expiredWorkers: 1, reaped: 1 });
    // Back in the queue at once, in its old place.
    const back = await engine.job(job.id);
    expect(back).toMatchObject({ status: "pending", attempts: 1 });
    expect(back.lastError).toMatchObject({ code: "LEASE_EXPIRED", worker: "zombie" });

    const owned = await claimOne("healthy");
    expect(owned).toMatchObject({ attempts: 2, leaseOwner: "healthy" });

    // The zombie wakes up and reports: every write is refused by the state guard.
    const done = await completeJobs(db.pool, engine.sql, "zombie", [
      { id: job.id, attempt: 1, result: "late" },
    ]);
    expect(done.size).toBe(0);
    const failed = await failJobs(db.pool, engine.sql, "zombie", [
      { id: job.id, attempt: 1, error: boom, delayMs: 0, permanent: true },
    ]);
    expect(failed).toEqual([]);
    // Right attempt number, wrong owner: refused too.
    expect(
      (await completeJobs(db.pool, engine.sql, "zombie", [{ id: job.id, attempt: 2, result: 1 }]))
        .size,
    ).toBe(0);
    // Its heartbeat renews nothing: it was reaped, and the job is not its own.
    const leaseBefore = (await engine.job(job.id)).leaseExpiresAt!.getTime();
    const beat = await heartbeat(
      db.pool,
      engine.sql,
      { id: "zombie", listening: false, runningByQueue: { default: 1 } },
      [job.id],
      60_000,
    );
    expect(beat).toEqual({ alive: false, lost: [job.id] });

    const still = await engine.job(job.id);
    expect(still).toMatchObject({ status: "running", attempts: 2, leaseOwner: "healthy" });
    expect(still.result).toBeNull();
    expect(still.leaseExpiresAt!.getTime()).toBe(leaseBefore);

    const events = await engine.events(job.id);
    expect(events.map((e) => [e.kind, e.attempt, e.worker_id])).toEqual([
      ["lease_expired", 1, "zombie"],
      ["retry_scheduled", 1, null],
      ["outcome_ignored", 1, "zombie"],
      ["outcome_ignored", 1, "zombie"],
      ["outcome_ignored", 2, "zombie"],
    ]);
    expect(events[0]!.data).toMatchObject({ lostWorker: "zombie" });
    expect(events[2]!.message).toContain("completion of attempt 1 ignored");
    expect(events[3]!.message).toContain("failure of attempt 1 ignored");

    // The rightful owner completes.
    const ok = await completeJobs(db.pool, engine.sql, "healthy", [
      { id: job.id, attempt: 2, result: "on time" },
    ]);
    expect([...ok]).toEqual([job.id]);
    expect(await engine.job(job.id)).toMatchObject({ status: "completed", result: "on time" });
  });

  it("an expired lease on the last attempt fails the job", async () => {
    const job = await enqueue({ maxAttempts: 1 });
    await claimOne("zombie", 1);
    await leaseExpired(job.id);
    expect(await reap()).toMatchObject({ reaped: 1 });
    const dead = await engine.job(job.id);
    expect(dead).toMatchObject({ status: "failed", attempts: 1 });
    expect(dead.finishedAt).toBeInstanceOf(Date);
    expect((await engine.events(job.id)).map((e) => [e.kind, e.message])).toEqual([
      ["lease_expired", "lease expired: worker zombie stopped heartbeating"],
      ["failed", "out of attempts"],
    ]);
  });

  it("cancels scheduled, retrying and running jobs", async () => {
    const pending = await enqueue();
    const retrying = await enqueue();
    const running = await enqueue();
    // Take "retrying" and "running", but leave the first one: due in an hour.
    await db.query(
      "UPDATE {{schema}}.jobs SET status = 'scheduled', run_at = now() + interval '1 hour' WHERE id = $1",
      [pending.id],
    );
    const claimed = await engine.claim("w1", { ...MANUAL, limit: 2 });
    expect(claimed.map((j) => j.id).sort()).toEqual([retrying.id, running.id].sort());
    await failJobs(db.pool, engine.sql, "w1", [
      { id: retrying.id, attempt: 1, error: boom, delayMs: 60_000, permanent: false },
    ]);
    expect((await engine.job(retrying.id)).status).toBe("retrying");

    const cancelled = await db.pgwake.cancel([pending.id, retrying.id, running.id], "not needed");
    const was = Object.fromEntries(cancelled.map((c) => [c.job.id, c.was]));
    expect(was).toEqual({
      [pending.id]: "scheduled",
      [retrying.id]: "retrying",
      [running.id]: "running",
    });
    for (const c of cancelled) {
      expect(c.job.status).toBe("cancelled");
      expect(c.job.finishedAt).toBeInstanceOf(Date);
      expect(c.job.leaseExpiresAt).toBeNull();
    }
    const events = await engine.events(running.id);
    expect(events.at(-1)).toMatchObject({
      kind: "cancelled",
      worker_id: "w1",
      data: { was: "running", reason: "not needed" },
    });

    // The worker that ran it cannot complete it any more.
    const done = await completeJobs(db.pool, engine.sql, "w1", [
      { id: running.id, attempt: 1, result: null },
    ]);
    expect(done.size).toBe(0);
    expect((await engine.job(running.id)).status).toBe("cancelled");
    expect(await engine.claim("w2", { ...MANUAL, limit: 10 })).toEqual([]);
  });

  it("cancelling a running job aborts its handler's signal", async () => {
    await startWorker([waits]);
    const { job } = await db.pgwake.enqueue("waits", {});
    const signal = await started.promise;
    const [c] = await db.pgwake.cancel([job.id]);
    expect(c?.was).toBe("running");
    await waitFor(() => signal.aborted, { message: "handler signal to abort" });
    expect(signal.reason).toBeInstanceOf(PgwakeError);
    expect((signal.reason as PgwakeError).code).toBe("CANCELLED");
    // The handler's (late) result is not written over the cancellation.
    const worker = workers[0]!;
    await waitFor(() => worker.busy === 0, { message: "slot to free" });
    expect(await engine.job(job.id)).toMatchObject({ status: "cancelled", result: null });
  });

  it("terminal jobs cannot be cancelled", async () => {
    const completed = await enqueue();
    const failed = await enqueue();
    const cancelled = await enqueue();
    await engine.claim("w1", { ...MANUAL, limit: 2 });
    await completeJobs(db.pool, engine.sql, "w1", [{ id: completed.id, attempt: 1, result: 1 }]);
    await failJobs(db.pool, engine.sql, "w1", [
      { id: failed.id, attempt: 1, error: boom, delayMs: 0, permanent: true },
    ]);
    await db.pgwake.cancel([cancelled.id]);
    const before = await Promise.all([completed, failed, cancelled].map((j) => engine.job(j.id)));
    expect(before.map((j) => j.status)).toEqual(["completed", "failed", "cancelled"]);

    expect(await db.pgwake.cancel([completed.id, failed.id, cancelled.id])).toEqual([]);
    const after = await Promise.all([completed, failed, cancelled].map((j) => engine.job(j.id)));
    expect(after).toEqual(before);
  });

  it("retry revives failed and cancelled jobs with a fresh attempt budget", async () => {
    const failed = await enqueue({ maxAttempts: 1 });
    const cancelled = await enqueue();
    const completed = await enqueue();
    await engine.claim("w1", { ...MANUAL, limit: 1 }); // the first: failed
    await failJobs(db.pool, engine.sql, "w1", [
      { id: failed.id, attempt: 1, error: boom, delayMs: 0, permanent: false },
    ]);
    expect((await engine.job(failed.id)).status).toBe("failed");
    await db.pgwake.cancel([cancelled.id]);
    await engine.claim("w1", { ...MANUAL, limit: 1 }); // completed
    await completeJobs(db.pool, engine.sql, "w1", [{ id: completed.id, attempt: 1, result: 1 }]);

    const pending = await enqueue({ delayMs: 3_600_000 });

    const revived = await db.pgwake.retry([failed.id, cancelled.id, completed.id, pending.id]);
    expect(revived.map((j) => j.id).sort()).toEqual([failed.id, cancelled.id].sort());
    for (const j of revived) {
      expect(j).toMatchObject({
        status: "pending",
        attempts: 0,
        finishedAt: null,
        leaseOwner: null,
      });
    }
    expect((await engine.job(completed.id)).status).toBe("completed");
    expect((await engine.job(pending.id)).status).toBe("scheduled");
    expect((await engine.events(failed.id)).at(-1)).toMatchObject({ kind: "retried" });

    // The fresh budget: the once-dead job (maxAttempts 1) runs again as attempt 1.
    const again = await engine.claim("w2", { ...MANUAL, limit: 10 });
    expect(again.map((j) => [j.id, j.attempts]).sort()).toEqual(
      [
        [failed.id, 1],
        [cancelled.id, 1],
      ].sort(),
    );
    await completeJobs(
      db.pool,
      engine.sql,
      "w2",
      again.map((j) => ({ id: j.id, attempt: 1, result: null })),
    );
    await db.pgwake.cancel([pending.id]);
  });

  it("returnJobs gives the attempt back", async () => {
    const fresh = await enqueue();
    const retried = await enqueue();
    // "retried" is on its second attempt.
    await engine.claim("w1", { ...MANUAL, limit: 2 });
    await failJobs(db.pool, engine.sql, "w1", [
      { id: retried.id, attempt: 1, error: boom, delayMs: 0, permanent: false },
    ]);
    const returned = await returnJobs(
      db.pool,
      engine.sql,
      "w1",
      [{ id: fresh.id, attempt: 1 }],
      "bye",
    );
    expect(returned).toEqual([fresh.id]);
    expect(await engine.job(fresh.id)).toMatchObject({ status: "pending", attempts: 0 });
    expect(
      (await engine.events(fresh.id)).map((e) => [e.kind, e.attempt, e.worker_id, e.message]),
    ).toEqual([["returned", 1, "w1", "bye"]]);

    const claimed = await engine.claim("w2", { ...MANUAL, limit: 2 });
    const second = claimed.find((j) => j.id === retried.id)!;
    expect(second.attempts).toBe(2);
    // Only the holder can return a job.
    expect(
      await returnJobs(db.pool, engine.sql, "w1", [{ id: retried.id, attempt: 2 }], "x"),
    ).toEqual([]);
    expect(
      await returnJobs(db.pool, engine.sql, "w2", [{ id: retried.id, attempt: 2 }], "x"),
    ).toEqual([retried.id]);
    expect(await engine.job(retried.id)).toMatchObject({ status: "pending", attempts: 1 });
    // Clean up what w2 still holds.
    const rest = claimed.filter((j) => j.id !== retried.id);
    await completeJobs(
      db.pool,
      engine.sql,
      "w2",
      rest.map((j) => ({ id: j.id, attempt: j.attempts, result: null })),
    );
    const last = await engine.claim("w3", { ...MANUAL, limit: 10 });
    await completeJobs(
      db.pool,
      engine.sql,
      "w3",
      last.map((j) => ({ id: j.id, attempt: j.attempts, result: null })),
    );
  });

  it("the timeline reconstructs every step", async () => {
    const job = await enqueue({ maxAttempts: 5 });
    await claimOne("w1");
    await failJobs(db.pool, engine.sql, "w1", [
      { id: job.id, attempt: 1, error: boom, delayMs: 0, permanent: false },
    ]);
    await claimOne("w1", 1);
    await leaseExpired(job.id);
    expect(await reap()).toMatchObject({ reaped: 1 });
    await claimOne("w2");
    await completeJobs(db.pool, engine.sql, "w2", [{ id: job.id, attempt: 3, result: "done" }]);

    const page = await db.pgwake.timeline(job.id);
    expect(page?.nextCursor).toBeNull();
    const steps = page!.events.map((e) => [e.kind, e.attempt, e.workerId]);
    expect(steps).toEqual([
      ["enqueued", null, null],
      ["claimed", 1, "w1"],
      ["attempt_failed", 1, "w1"],
      ["retry_scheduled", 1, "w1"],
      ["claimed", 2, "w1"],
      ["lease_expired", 2, "w1"],
      ["retry_scheduled", 2, null],
      ["claimed", 3, "w2"],
      ["completed", 3, "w2"],
    ]);
    const times = page!.events.map((e) => e.at.getTime());
    expect([...times].sort((a, b) => a - b)).toEqual(times);

    // Paging: two events per page, the derived steps where they belong, nothing lost.
    const seen: string[] = [];
    let after: number | undefined;
    for (let i = 0; i < 10; i++) {
      const p = await db.pgwake.timeline(job.id, { after, limit: 2 });
      seen.push(...p!.events.map((e) => `${e.kind}:${e.attempt}`));
      if (p!.nextCursor === null) break;
      after = p!.nextCursor;
    }
    expect(seen).toEqual(steps.map(([k, a]) => `${k}:${a}`));
    expect(await db.pgwake.timeline(999_999_999)).toBeNull();
  });

  it("steps within one millisecond keep their causal order in the timeline", async () => {
    // On a fast machine a retry's claim lands in the same millisecond as the failure before it.
    const job = await enqueue({ maxAttempts: 5 });
    await claimOne("w1");
    await failJobs(db.pool, engine.sql, "w1", [
      { id: job.id, attempt: 1, error: boom, delayMs: 0, permanent: false },
    ]);
    await claimOne("w2");
    await completeJobs(db.pool, engine.sql, "w2", [{ id: job.id, attempt: 2, result: null }]);
    await db.query(
      `WITH t AS (SELECT date_trunc('milliseconds', now()) AS t)
       UPDATE {{schema}}.job_history SET created_at = t.t, started_at = t.t, finished_at = t.t FROM t WHERE id = $1`,
      [job.id],
    );
    await db.query(
      `UPDATE {{schema}}.job_events e SET at = j.started_at,
         data = CASE WHEN e.data ? 'startedAt' THEN jsonb_set(e.data, '{startedAt}', to_jsonb(j.started_at)) ELSE e.data END
       FROM {{schema}}.job_history j WHERE j.id = e.job_id AND e.job_id = $1`,
      [job.id],
    );
    const page = await db.pgwake.timeline(job.id);
    expect(page!.events.map((e) => `${e.kind}:${e.attempt ?? "-"}`)).toEqual([
      "enqueued:-",
      "claimed:1",
      "attempt_failed:1",
      "retry_scheduled:1",
      "claimed:2",
      "completed:2",
    ]);
  });
});
