import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { defineTask, type Job, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// The fallback poll is a minute: anything that runs within a second was woken, not polled.
const POLL_MS = 60_000;
const PROMPT_MS = 1_000;

/** When each job's handler started (performance.now()), by job id. */
const startedAt = new Map<number, number>();
const attemptsSeen = new Map<number, number[]>();
const record = (id: number, attempt: number) => {
  if (!startedAt.has(id)) startedAt.set(id, performance.now());
  attemptsSeen.set(id, [...(attemptsSeen.get(id) ?? []), performance.now()]);
  void attempt;
};
const ping = defineTask({
  name: "ping",
  handler: (_payload, ctx) => {
    record(ctx.job.id, ctx.attempt);
    return null;
  },
});
/** A task whose first attempt fails; its retry comes within `backoffMs` (full jitter). */
const failingOnce = (name: string, backoffMs: number) =>
  defineTask({
    name,
    backoff: { baseMs: backoffMs, factor: 1, maxMs: backoffMs },
    handler: (_payload, ctx) => {
      record(ctx.job.id, ctx.attempt);
      if (ctx.attempt === 1) throw new Error("first attempt fails");
      return "second attempt ok";
    },
  });
const failOnce = failingOnce("fail-once", 400);
const failOnceSlowly = failingOnce("fail-once-slowly", 2_000);

describe("wake-up with a 60 s fallback poll", () => {
  let db: TestDb;
  let worker: Worker | undefined;

  beforeAll(async () => {
    db = await createTestDb("wakeup", { tasks: [ping, failOnce, failOnceSlowly] });
  });
  afterEach(async () => {
    await worker?.stop({ graceMs: 1_000 });
    worker = undefined;
  });
  afterAll(async () => {
    await db?.close();
  });

  /** Starts a worker and waits until it sleeps: listening and registered as a waiter. */
  const startIdleWorker = async (options: { claimCooldownMs?: number } = {}): Promise<Worker> => {
    worker = db.pgwake.worker({
      pollIntervalMs: POLL_MS,
      maintenanceIntervalMs: 0,
      ...options,
    });
    await worker.start();
    await waitForIdle(worker);
    return worker;
  };

  const waitForIdle = async (w: Worker) => {
    await waitFor(() => w.listening, { message: "listener" });
    await waitFor(
      async () =>
        (await db.query("SELECT 1 FROM {{schema}}.waiters WHERE worker_id = $1", [w.id])).length >
        0,
      { message: "waiter registration" },
    );
  };

  /** Enqueues one job and returns how long its handler took to start, in ms. */
  const latencyOf = async (task = "ping", options: { delayMs?: number } = {}): Promise<number> => {
    const before = performance.now();
    const { job } = await db.pgwake.enqueue(task, {}, options);
    const at = await waitFor(() => startedAt.get(job.id), {
      timeoutMs: 30_000,
      intervalMs: 2,
      message: `job ${job.id} to start`,
    });
    return at - before;
  };

  /** Enqueues a job that fails its first attempt; returns it completed and the retry's gap. */
  const retried = async (task: string): Promise<{ done: Job; gapMs: number }> => {
    const { job } = await db.pgwake.enqueue(task, {});
    const done = await waitFor(
      async () => {
        const j = await db.pgwake.getJob(job.id);
        return j?.status === "completed" ? j : null;
      },
      { timeoutMs: 20_000, message: "retried job to complete" },
    );
    expect(done.attempts).toBe(2);
    const [first, second] = attemptsSeen.get(job.id)!;
    return { done, gapMs: second! - first! };
  };

  /** The backend pid of a worker's listener, as its wake-up tokens carry it. */
  const listenerPid = async (w: Worker): Promise<number | undefined> => {
    const rows = await db.query<{ pid: number }>(
      `SELECT DISTINCT a.pid FROM {{schema}}.waiters t
       JOIN pg_stat_activity a ON a.pid = t.listener_pid AND a.application_name = 'pgwake-listener'
       WHERE t.worker_id = $1`,
      [w.id],
    );
    expect(rows.length).toBeLessThanOrEqual(1);
    return rows[0]?.pid;
  };

  it("an idle worker starts a new job well under a second later", async () => {
    const w = await startIdleWorker();
    const claimsBefore = w.stats.claimQueries;
    const ms = await latencyOf();
    console.log(`wake-up latency: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(PROMPT_MS);
    expect(w.stats.claimQueries).toBeGreaterThan(claimsBefore);
  });

  it("after a claim that found jobs, claims again after its cooldown and takes what arrived meanwhile together", async () => {
    const w = await startIdleWorker({ claimCooldownMs: 400 });
    const measure = async () => {
      await waitForIdle(w);
      const { job: first } = await db.pgwake.enqueue("ping", {});
      const firstAt = await waitFor(() => startedAt.get(first.id), { intervalMs: 2 });
      const claims = w.stats.claimQueries;
      // The claim found a job: the worker did not ask to be woken, so these two wait for the
      // cooldown (a woken worker would start them within milliseconds).
      const { job: second } = await db.pgwake.enqueue("ping", {});
      const { job: third } = await db.pgwake.enqueue("ping", {});
      const secondAt = await waitFor(() => startedAt.get(second.id), {
        timeoutMs: 10_000,
        intervalMs: 2,
      });
      const thirdAt = await waitFor(() => startedAt.get(third.id), { intervalMs: 2 });
      return {
        gapMs: secondAt - firstAt,
        together: thirdAt - secondAt < 50,
        claims: w.stats.claimQueries - claims,
      };
    };
    // A registering worker watches every transaction open at that moment, and claims as they
    // end; other test files' transactions can so wake it early. The cooldown must show in one
    // of three tries (without it, it shows in none: the second job starts within milliseconds).
    const tries: Awaited<ReturnType<typeof measure>>[] = [];
    for (let i = 0; i < 3; i++) {
      const t = await measure();
      tries.push(t);
      if (t.gapMs >= 300 && t.claims === 1) break;
    }
    expect(
      tries.some((t) => t.gapMs >= 300 && t.claims === 1 && t.together),
      JSON.stringify(tries),
    ).toBe(true);
  });

  it("wakes up again after its listener backend is terminated", async () => {
    const w = await startIdleWorker();
    const pid = await waitFor(() => listenerPid(w), { message: "listener backend" });
    const [killed] = await db.query<{ ok: boolean }>("SELECT pg_terminate_backend($1) AS ok", [
      pid,
    ]);
    expect(killed!.ok).toBe(true);

    // A job enqueued while the listener is down: the reconnect claims it (catch-up).
    await waitFor(() => !w.listening, { intervalMs: 1, message: "the worker to notice" });
    const missed = await latencyOf();
    console.log(`job enqueued during the listener outage started after ${missed.toFixed(1)} ms`);
    expect(missed).toBeLessThan(5_000);

    // A new backend, listening again; then wake-ups are prompt again.
    const again = await waitFor(
      async () => {
        const p = await listenerPid(w);
        return p !== undefined && p !== pid ? p : undefined;
      },
      { timeoutMs: 15_000, message: "a new listener backend" },
    );
    expect(again).not.toBe(pid);
    await waitForIdle(w);
    const ms = await latencyOf();
    console.log(`wake-up latency after reconnect: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(PROMPT_MS);
  });

  it("never misses a wake-up: 200 jobs, one at a time", { timeout: 240_000 }, async () => {
    await startIdleWorker();
    const latencies: number[] = [];
    for (let i = 0; i < 200; i++) latencies.push(await latencyOf());
    latencies.sort((a, b) => a - b);
    const p50 = latencies[100]!;
    const max = latencies.at(-1)!;
    console.log(`200 sequential wake-ups: p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
    expect(max).toBeLessThan(PROMPT_MS);
  });

  it("runs a delayed job on time without waiting for the poll", async () => {
    await startIdleWorker();
    const ms = await latencyOf("ping", { delayMs: 300 });
    console.log(`delayMs 300 job started after ${ms.toFixed(1)} ms`);
    // Database and process clocks may differ slightly: allow a little early.
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(300 + PROMPT_MS);
  });

  it("runs two delayed jobs on time: the later one's time is kept while the earlier one's timer waits", async () => {
    await startIdleWorker();
    const before = performance.now();
    const { job: early } = await db.pgwake.enqueue("ping", {}, { delayMs: 300 });
    const { job: late } = await db.pgwake.enqueue("ping", {}, { delayMs: 1_500 });
    const lateAt = await waitFor(() => startedAt.get(late.id), {
      timeoutMs: 30_000,
      intervalMs: 5,
      message: "the later delayed job to start",
    });
    expect(startedAt.get(early.id)).toBeDefined();
    expect(lateAt - before).toBeGreaterThanOrEqual(1_450);
    expect(lateAt - before).toBeLessThan(1_500 + PROMPT_MS);
  });

  it("runs a failed job's retry after its backoff without waiting for the poll", async () => {
    await startIdleWorker();
    const { done, gapMs: gap } = await retried("fail-once");
    console.log(
      `retry with a backoff of at most 400 ms started ${gap.toFixed(1)} ms after the first attempt`,
    );
    expect(gap).toBeLessThan(400 + PROMPT_MS);
    // It did not run before its run_at (database time).
    const [retry] = await db.query<{ run_at: string }>(
      "SELECT data->>'runAt' AS run_at FROM {{schema}}.job_events WHERE job_id = $1 AND kind = 'retry_scheduled'",
      [done.id],
    );
    expect(done.startedAt!.getTime()).toBeGreaterThanOrEqual(new Date(retry!.run_at).getTime() - 1);
  });

  it("keeps a retry's timer while it claims on a cooldown", async () => {
    // The claim that took the job found less than it had room for: a cooldown claim follows,
    // due before the retry (backoff up to 2 s). The retry must still run on time.
    await startIdleWorker({ claimCooldownMs: 50 });
    const { gapMs } = await retried("fail-once-slowly");
    expect(gapMs).toBeLessThan(2_000 + PROMPT_MS);
  });

  it("starts a job whose transaction was open while the worker registered, once it commits", async () => {
    // The submitter checks for a waiting worker before the worker has put its token, so it
    // sends no notification; the worker must find the job through the transactions it watches.
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      const { job } = await db.pgwake.enqueue("ping", {}, { client });
      await startIdleWorker();
      expect(startedAt.has(job.id)).toBe(false);
      const before = performance.now();
      await client.query("COMMIT");
      const at = await waitFor(() => startedAt.get(job.id), {
        timeoutMs: 30_000,
        intervalMs: 2,
        message: `job ${job.id} to start after its commit`,
      });
      console.log(
        `job committed after the worker registered started ${(at - before).toFixed(1)} ms later`,
      );
      expect(at - before).toBeLessThan(PROMPT_MS);
    } finally {
      await client.query("ROLLBACK").catch(() => {});
      client.release();
    }
  });
});
