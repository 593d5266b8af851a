import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createAudit,
  dbNow,
  maxInQueue,
  maxPerKey,
  openGate,
  runningNow,
  startedCount,
} from "../flow/fixtures/audit.ts";
import { Fleet, type FleetWorker } from "../flow/fixtures/fleet.ts";
import { work } from "../flow/fixtures/tasks.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// Flow control across a fleet of 4 real worker processes with NOTIFY on (issue 12). Every figure
// comes from the handlers' own audit rows (test/flow/fixtures/audit.ts). The fallback poll is
// 120 s, far longer than this file runs: whatever a worker does within a test, it did because it
// was told (a claim, a completion, a notification), not because a poll came by.

// Short, so killed workers' jobs come back within seconds; not shorter, so that a worker process
// starved on this busy box does not fence itself (a fence is its own case: flow-locks.test.ts).
const LEASE_MS = 5_000;
const HEARTBEAT_MS = 1_000;
const WORKERS = 4;

let db: TestDb;
let fleet: Fleet;

beforeAll(async () => {
  db = await createTestDb("flow_fleet", { tasks: [work] });
  await createAudit(db);
  fleet = new Fleet(db, {
    concurrency: 32,
    leaseMs: LEASE_MS,
    heartbeatMs: HEARTBEAT_MS,
    maintenanceIntervalMs: 250,
    pollIntervalMs: 120_000,
    poolSize: 2,
  });
  await fleet.start(WORKERS);
});

afterAll(async () => {
  await fleet?.close();
  await db?.close();
});

/** Submits `count` jobs of `flow.work` per key, keys interleaved (as tenants would submit). */
async function submit(
  queue: string,
  keys: readonly (string | null)[],
  count: number,
  payload: Record<string, unknown>,
): Promise<number[]> {
  const jobs = [];
  for (let i = 0; i < count; i++) {
    for (const key of keys) {
      jobs.push({
        task: "flow.work",
        queue,
        payload,
        ...(key === null ? {} : { concurrencyKey: key }),
      });
    }
  }
  const ids: number[] = [];
  for (let i = 0; i < jobs.length; i += 5_000) {
    const done = await db.pgwake.untyped().enqueueMany(jobs.slice(i, i + 5_000));
    ids.push(...done.map((d) => d.job.id));
  }
  return ids;
}

const finishedCount = async (queue: string) =>
  (
    await db.query<{ n: number }>(
      "SELECT count(*)::integer AS n FROM {{schema}}.all_jobs WHERE queue = $1 AND status IN ('completed', 'failed', 'cancelled')",
      [queue],
    )
  )[0]!.n;

/** Waits until the queue's row (written by every claim of a limited queue) rests for `quietMs`. */
async function waitForQuietQueue(queue: string, quietMs: number): Promise<void> {
  let last = "";
  let since = Date.now();
  await waitFor(
    async () => {
      const rows = await db.query<{ v: string }>(
        "SELECT xmin::text AS v FROM {{schema}}.queues WHERE name = $1",
        [queue],
      );
      const version = rows[0]?.v ?? "";
      if (version !== last) {
        last = version;
        since = Date.now();
      }
      return Date.now() - since >= quietMs;
    },
    { timeoutMs: 30_000, intervalMs: 50, message: `no claim of ${queue} for ${quietMs} ms` },
  );
}

describe("the audit", () => {
  it("sees more than 2 runs of one key at once when nothing limits them (so its checks can fail)", async () => {
    await submit("unlimited", ["k"], 40, { ms: 300 });
    await waitFor(async () => (await finishedCount("unlimited")) === 40, {
      timeoutMs: 30_000,
      message: "40 unlimited jobs to finish",
    });
    expect((await maxPerKey(db, "unlimited")).get("k")).toBeGreaterThan(2);
  });
});

describe("per-key concurrency across 4 processes", () => {
  it("never runs more than 2 jobs of a key at once, also while workers are SIGKILLed (their jobs count until their lease expires)", {
    timeout: 120_000,
  }, async () => {
    const queue = "tenants";
    const keys = Array.from({ length: 50 }, (_, i) => `tenant-${i}`);
    await db.pgwake.setQueueLimits(queue, { keyConcurrency: 2 });
    const total = keys.length * 60;
    await submit(queue, keys, 60, { minMs: 150, maxMs: 300 });

    // Two crashes, each of a worker holding running jobs, at 15% and at 40% of the run; a new
    // worker process replaces each (started in the background: it takes seconds on a busy box).
    const kills: { worker: FleetWorker; leaseEnds: Date; held: number }[] = [];
    const replacements: Promise<FleetWorker>[] = [];
    for (const share of [0.15, 0.4]) {
      await waitFor(async () => (await finishedCount(queue)) >= total * share, {
        timeoutMs: 60_000,
        intervalMs: 50,
        message: `${share * 100}% of the jobs to finish`,
      });
      // A worker that holds running jobs right now (the engine's view).
      let victim: FleetWorker | undefined;
      let n = 0;
      await waitFor(
        async () => {
          const holders = await db.query<{ worker: string; n: number }>(
            `SELECT lease_owner AS worker, count(*)::integer AS n FROM {{schema}}.jobs
             WHERE queue = $1 AND status = 'running' GROUP BY 1 ORDER BY 2 DESC`,
            [queue],
          );
          for (const h of holders) {
            victim = fleet.alive.find((w) => w.id === h.worker);
            n = h.n;
            if (victim) return true;
          }
          return false;
        },
        { timeoutMs: 20_000, intervalMs: 20, message: "a worker holding jobs" },
      ).catch(async (error: unknown) => {
        console.log("no worker holds jobs:", {
          statuses: await db.query(
            "SELECT status, held_slot, lease_owner, count(*)::integer AS n FROM {{schema}}.jobs WHERE queue = $1 GROUP BY 1, 2, 3",
            [queue],
          ),
          slots: await db.query(
            "SELECT sum(running)::integer AS held, count(*) FILTER (WHERE running > 0)::integer AS keys FROM {{schema}}.queue_keys WHERE queue = $1",
            [queue],
          ),
          queue: await db.query(
            "SELECT running, throttled_at, now() FROM {{schema}}.queues WHERE name = $1",
            [queue],
          ),
          workers: await db.query("SELECT id, reaped_at, lease_expires_at FROM {{schema}}.workers"),
          waiters: await db.query("SELECT queue, worker_id, since FROM {{schema}}.waiters"),
          alive: fleet.alive.map((w) => w.id),
        });
        throw error;
      });
      await fleet.kill(victim!);
      // Dead, it renews nothing: this is when its lease ends.
      const [lease] = await db.query<{ ends: Date }>(
        "SELECT lease_expires_at AS ends FROM {{schema}}.workers WHERE id = $1",
        [victim!.id],
      );
      kills.push({ worker: victim!, leaseEnds: lease!.ends, held: n });
      replacements.push(fleet.spawn());
    }
    await Promise.all(replacements);

    await waitFor(async () => (await finishedCount(queue)) === total, {
      timeoutMs: 90_000,
      intervalMs: 100,
      message: `all ${total} jobs to finish`,
    });

    // Every job ran to completion.
    const statuses = await db.query<{ status: string; n: number }>(
      "SELECT status, count(*)::integer AS n FROM {{schema}}.all_jobs WHERE queue = $1 GROUP BY status",
      [queue],
    );
    expect(statuses).toEqual([{ status: "completed", n: total }]);

    // The limit held: at most 2 runs per key at once, a killed run lasting until it was reaped.
    const perKey = await maxPerKey(db, queue);
    expect(perKey.size).toBe(keys.length);
    const over = [...perKey].filter(([, n]) => n > 2);
    if (over.length > 0) {
      // What ran at once, for the report: the runs of the first key over its limit.
      const runs = await db.query(
        `SELECT a.job_id, a.attempt, a.worker_id, a.started_at, a.ended_at, a.aborted,
                (SELECT min(e.at) FROM {{schema}}.job_events e
                 WHERE e.job_id = a.job_id AND e.attempt = a.attempt AND e.kind = 'lease_expired') AS reaped_at
         FROM {{schema}}.flow_audit a WHERE a.queue = $1 AND a.key = $2 ORDER BY a.started_at`,
        [queue, over[0]![0]],
      );
      console.log(
        `over the limit: ${JSON.stringify(over)}; runs of ${over[0]![0]}:`,
        runs,
        "kills:",
        kills,
      );
    }
    expect(over).toEqual([]);
    // ... and it was what held them back: most keys did run 2 at once.
    expect([...perKey.values()].filter((n) => n === 2).length).toBeGreaterThanOrEqual(40);

    // The killed runs: each was reaped after its worker's lease ran out (not before), and its
    // job ran again only after that.
    const killed = await db.query<{
      job_id: number;
      attempt: number;
      worker_id: string;
      reaped_at: Date | null;
      next_start: Date | null;
    }>(
      `SELECT a.job_id, a.attempt, a.worker_id,
              (SELECT min(e.at) FROM {{schema}}.job_events e
               WHERE e.job_id = a.job_id AND e.attempt = a.attempt AND e.kind = 'lease_expired') AS reaped_at,
              (SELECT min(b.started_at) FROM {{schema}}.flow_audit b
               WHERE b.job_id = a.job_id AND b.attempt > a.attempt) AS next_start
       FROM {{schema}}.flow_audit a WHERE a.queue = $1 AND a.ended_at IS NULL`,
      [queue],
    );
    expect(killed.length).toBeGreaterThan(0);
    for (const run of killed) {
      const kill = kills.find((k) => k.worker.id === run.worker_id);
      expect(kill, `run of job ${run.job_id} left unfinished by a live worker`).toBeDefined();
      expect(run.reaped_at, `job ${run.job_id} reaped`).not.toBeNull();
      // Not before the dead worker's lease ran out.
      expect(run.reaped_at!.getTime()).toBeGreaterThanOrEqual(kill!.leaseEnds.getTime());
      expect(run.next_start!.getTime()).toBeGreaterThan(run.reaped_at!.getTime());
    }

    // Waiting for a slot burnt no attempt: every attempt of a job has a reason — its handler ran
    // (an audit row), or it was taken back from a killed worker (running or claimed, its
    // `lease_expired`), or it failed (an `attempt_failed`, e.g. its audit write refused on a
    // crowded server).
    const unexplained = await db.query<{ id: number; attempt: number }>(
      `SELECT j.id, n AS attempt
       FROM {{schema}}.all_jobs j, generate_series(1, j.attempts) n
       WHERE j.queue = $1
         AND NOT EXISTS (SELECT 1 FROM {{schema}}.flow_audit a WHERE a.job_id = j.id AND a.attempt = n)
         AND NOT EXISTS (SELECT 1 FROM {{schema}}.job_events e
                         WHERE e.job_id = j.id AND e.attempt = n
                           AND e.kind IN ('lease_expired', 'attempt_failed'))`,
      [queue],
    );
    expect(unexplained).toEqual([]);
    const reapedFrom = await db.query<{ worker_id: string }>(
      `SELECT DISTINCT e.worker_id FROM {{schema}}.job_events e
       JOIN {{schema}}.all_jobs j ON j.id = e.job_id
       WHERE j.queue = $1 AND e.kind = 'lease_expired'`,
      [queue],
    );
    const killedIds = new Set(kills.map((k) => k.worker.id));
    for (const { worker_id } of reapedFrom) expect(killedIds.has(worker_id), worker_id).toBe(true);
    const retaken = (
      await db.query<{ n: number }>(
        `SELECT count(DISTINCT e.job_id)::integer AS n FROM {{schema}}.job_events e
         JOIN {{schema}}.all_jobs j ON j.id = e.job_id WHERE j.queue = $1 AND e.kind = 'lease_expired'`,
        [queue],
      )
    )[0]!.n;

    // No slot leaked: every counter is back to zero.
    const counters = await db.query<{ running: number; keys: number }>(
      `SELECT q.running, (SELECT coalesce(sum(c.running), 0)::integer FROM {{schema}}.queue_keys c WHERE c.queue = q.name) AS keys
       FROM {{schema}}.queues q WHERE q.name = $1`,
      [queue],
    );
    expect(counters).toEqual([{ running: 0, keys: 0 }]);
    console.log(
      `per-key limit: ${total} jobs, 50 keys, ${kills.length} SIGKILLs (${kills.map((k) => k.held).join(", ")} jobs held), ${killed.length} runs killed, ${retaken} jobs taken back; keys that ran 2 at once: ${[...perKey.values()].filter((n) => n === 2).length}`,
    );
  });
});

describe("queue concurrency across 4 processes", () => {
  it("runs at most 5 jobs of the queue at once, and does run 5; a limit above one worker's slots (40 > 32) is shared by several", {
    timeout: 90_000,
  }, async () => {
    await db.pgwake.setQueueLimits("capped", { concurrency: 5 });
    await db.pgwake.setQueueLimits("wide", { concurrency: 40 });
    // Keys vary (they are not limited here); 32 slots per process, 128 in all.
    await Promise.all([
      submit("capped", ["a", "b", "c", "d"], 60, { minMs: 20, maxMs: 80 }),
      submit("wide", ["a", "b", "c", "d"], 60, { minMs: 50, maxMs: 150 }),
    ]);
    await waitFor(
      async () => (await finishedCount("capped")) === 240 && (await finishedCount("wide")) === 240,
      { timeoutMs: 60_000, intervalMs: 50, message: "480 jobs to finish" },
    );
    expect(await maxInQueue(db, "capped")).toBe(5);
    const wide = await maxInQueue(db, "wide");
    expect(wide).toBeLessThanOrEqual(40);
    // More than one process's slots: the limit held across processes.
    expect(wide).toBeGreaterThan(32);
  });
});

describe("a limit raised while the fleet waits", () => {
  /** Whether 4 jobs ran within 5 s of the raise, with nothing but its notification to go on. */
  let appliedByNotification: boolean | undefined;

  it("applies to the fleet, which never runs more than the limit", {
    timeout: 90_000,
  }, async () => {
    const queue = "raised";
    await db.pgwake.setQueueLimits(queue, { concurrency: 1 });
    // Jobs held open until the gate opens: no completion frees a slot meanwhile.
    await submit(queue, [null], 8, { ms: 0, gate: "raised" });
    try {
      await waitFor(async () => (await runningNow(db, queue)) === 1, {
        timeoutMs: 20_000,
        message: "the one job the limit allows to run",
      });
      // Every worker has claimed what it could and waits to be woken (its token for the queue).
      await waitFor(
        async () => {
          const rows = await db.query<{ worker_id: string }>(
            "SELECT worker_id FROM {{schema}}.waiters WHERE queue = $1",
            [queue],
          );
          const waiting = new Set(rows.map((r) => r.worker_id));
          return fleet.alive.every((w) => waiting.has(w.id));
        },
        { timeoutMs: 20_000, message: "every worker to wait for a wake-up of the queue" },
      );
      // ... and has stopped claiming: every claim of a limited queue writes the queue's row, which
      // has not changed for a second (a worker that just put its token may claim once more).
      await waitForQuietQueue(queue, 1_000);
      await db.pgwake.setQueueLimits(queue, { concurrency: 4 });
      // Nothing else happens: no submission, no completion, and no poll comes.
      appliedByNotification = await waitFor(async () => (await runningNow(db, queue)) === 4, {
        timeoutMs: 5_000,
        intervalMs: 50,
      }).then(
        () => true,
        () => false,
      );
    } finally {
      await openGate(db, "raised");
    }
    // Completions free slots: their workers claim again, under the raised limit.
    await waitFor(async () => (await finishedCount(queue)) === 8, {
      timeoutMs: 30_000,
      message: "8 jobs to finish",
    });
    const most = await maxInQueue(db, queue);
    expect(most).toBeLessThanOrEqual(4);
    expect(most).toBeGreaterThan(1);
  });

  // (Workers act on the control notification `{"queue": …}` that set_queue_limits sends: found
  // missing by this test, fixed in 33c50f4.)
  it("applies from the control NOTIFY, within seconds, not at the next poll", () => {
    expect(appliedByNotification).toBe(true);
  });
});

describe("a running job of a key cancelled (key concurrency 1)", () => {
  let runs: { job_id: number; started_at: Date; ended_at: Date | null; aborted: string | null }[] =
    [];

  it("frees its slot: the key's next job starts soon after (woken, not polled), the cancelled one stopped", {
    timeout: 60_000,
  }, async () => {
    const queue = "serial";
    await db.pgwake.setQueueLimits(queue, { keyConcurrency: 1 });
    // The first job stops 300 ms after its signal fires (it finishes what it was doing).
    const [first] = await submit(queue, ["acct"], 1, { ms: 0, gate: "never", windDownMs: 300 });
    const [second] = await submit(queue, ["acct"], 1, { ms: 0 });
    await waitFor(async () => (await runningNow(db, queue)) === 1, {
      timeoutMs: 20_000,
      message: "the first job to run",
    });
    expect((await db.pgwake.getJob(second!))?.status).toBe("pending");
    await db.pgwake.cancel([first!]);
    // The poll is 120 s away: only a wake-up starts the next job this soon.
    await waitFor(async () => (await finishedCount(queue)) === 2, {
      timeoutMs: 10_000,
      intervalMs: 50,
      message: "the key's next job to run within 10 s of the cancel",
    });
    // Both handlers have returned.
    await waitFor(
      async () =>
        (
          await db.query(
            "SELECT 1 FROM {{schema}}.flow_audit WHERE queue = $1 AND ended_at IS NOT NULL",
            [queue],
          )
        ).length === 2,
      { timeoutMs: 10_000, message: "both handlers to return" },
    );
    runs = await db.query(
      "SELECT job_id, started_at, ended_at, aborted FROM {{schema}}.flow_audit WHERE queue = $1 ORDER BY started_at",
      [queue],
    );
    console.log("a running job cancelled, then the key's next:", JSON.stringify(runs));
    // The cancelled handler was stopped (its signal fired).
    expect(runs).toHaveLength(2);
    expect(runs[0]).toMatchObject({ job_id: first, aborted: "CANCELLED" });
  });

  // Cancelling a running job released its slot in the cancel statement, before its worker had
  // even heard of it: the key's next job started while the cancelled handler still ran (17 and
  // 83 ms of overlap in two runs of five, with a handler that stops at once on its signal). Found
  // by this test; the slot is now held (slot_holds) until the worker says the handler returned.
  it("the key's next job starts only after the cancelled one stopped", () => {
    expect(runs).toHaveLength(2);
    expect(runs[1]!.started_at.getTime()).toBeGreaterThanOrEqual(runs[0]!.ended_at!.getTime());
  });
});

describe("a rate limit of 100/s across 4 processes", () => {
  /** Starts per second over 10 s, from the first: claims (database) and handler starts (audit). */
  let measured: { total: number; claims: number[]; starts: number[] } | undefined;
  let measuredBucket = 1;

  it("starts jobs all through 10 s (the measurement)", {
    timeout: 60_000,
  }, async () => {
    const queue = "rated";
    // The bucket starts full: what it holds now is its size (the burst).
    const bucket = (await db.pgwake.setQueueLimits(queue, { rateLimit: 100 })).tokens!;
    const ids = await submit(queue, [null], 1_600, { ms: 0 });
    const first = await waitFor(
      async () =>
        (
          await db.query<{ t: Date | null }>(
            "SELECT min(started_at) AS t FROM {{schema}}.all_jobs WHERE queue = $1",
            [queue],
          )
        )[0]!.t,
      { timeoutMs: 20_000, message: "the first start" },
    );
    // Ten seconds of starts, and a little more so that the tenth is complete.
    await waitFor(async () => (await dbNow(db)).getTime() >= first.getTime() + 10_500, {
      timeoutMs: 30_000,
      intervalMs: 100,
      message: "10 s of starts",
    });
    await db.pgwake.pauseQueue(queue);
    await db.pgwake.cancel(ids);

    const perSecond = async (source: string) => {
      const rows = await db.query<{ s: number; n: number }>(
        `SELECT floor(extract(epoch FROM started_at - $2))::integer AS s, count(*)::integer AS n
         FROM ${source} WHERE queue = $1 AND started_at < $2::timestamptz + interval '10 seconds'
         GROUP BY 1 ORDER BY 1`,
        [queue, first],
      );
      return Array.from({ length: 10 }, (_, s) => rows.find((r) => r.s === s)?.n ?? 0);
    };
    // Claims: the engine's start (`started_at`, stamped with the time the bucket was read).
    const claims = await perSecond("{{schema}}.all_jobs");
    const starts = await perSecond("{{schema}}.flow_audit");
    measured = { total: claims.reduce((sum, n) => sum + n, 0), claims, starts };
    console.log(
      `rate 100/s (bucket ${bucket}): ${measured.total} claims in 10 s; per second (claims): ${claims.join(" ")}; (handler starts): ${starts.join(" ")}`,
    );
    // Starts spread over the whole period (the limit let jobs through all along).
    expect(claims.every((n) => n > 0)).toBe(true);
    measuredBucket = bucket;
  });

  // Failed under contention while claims moved the bucket's clock back (flow-locks.test.ts, "a
  // rate-limited claim that waited for the queue's row behind a later one"): 1,250 starts in
  // 10 s at 100/s, 140 in one second, in one run; 107 in the first second in another.
  it("starts no more than its share in any second", () => {
    expect(measured, "the measurement above ran").toBeDefined();
    const { claims, starts } = measured!;
    // A bucket of 100/s holding at most `bucket` tokens: in any second at most 100, plus what it
    // held at the second's start. Claims are stamped with the time the bucket was read, so this
    // is exact.
    for (const [s, n] of claims.entries()) {
      expect(n, `claims in second ${s} (bucket ${measuredBucket})`).toBeLessThanOrEqual(
        100 + measuredBucket,
      );
    }
    // A handler starts a moment after its claim (its commit, then the worker's dispatch), so a
    // second may also hold a few starts claimed at the end of the previous one: 5 more (5%) is
    // a 50 ms delay at 100/s.
    for (const [s, n] of starts.entries()) {
      expect(n, `handler starts in second ${s}`).toBeLessThanOrEqual(100 + measuredBucket + 5);
    }
  });

  // The figure is 1,000 ± 5%. Above 1,050 is the limit broken: asserted.
  // Below 950 is starts lost to late claims: a bucket holds 50 ms of starts, and on this shared
  // 2-core box, with a load average above 15, four worker processes starve for longer than that
  // (736, 818 and 384 in such runs; 1,017 in a quieter one). That is a speed, which tests here do
  // not assert: the accuracy is measured by bench/scenarios/flow.ts (98.5% over 60 s). Asserted
  // here: the limiter is not stuck (a tenth of the figure; 384 in a run beside other benches).
  it("starts at most 1,000 + 5% in 10 s (and is not stuck)", () => {
    expect(measured, "the measurement above ran").toBeDefined();
    expect(measured!.total).toBeLessThanOrEqual(1_050);
    expect(measured!.total).toBeGreaterThanOrEqual(100);
  });
});

describe("fairness between keys", () => {
  it("starts the 10 jobs of a key submitted after another key's 10,000 within the next 50 starts", {
    timeout: 90_000,
  }, async () => {
    const queue = "shared";
    await db.pgwake.setQueueLimits(queue, { fair: true });
    await submit(queue, ["big"], 10_000, { ms: 0 });
    await waitFor(async () => (await startedCount(db, queue)) >= 500, {
      timeoutMs: 30_000,
      message: "the big key's jobs to be running",
    });
    const small = await submit(queue, ["small"], 10, { ms: 0 });
    // Every claim that starts from here on sees the small key's jobs (they were committed).
    const seen = await dbNow(db);
    await waitFor(
      async () =>
        (
          await db.query<{ n: number }>(
            "SELECT count(*)::integer AS n FROM {{schema}}.all_jobs WHERE id = ANY ($1::bigint[]) AND status = 'completed'",
            [small],
          )
        )[0]!.n === 10,
      { timeoutMs: 30_000, intervalMs: 50, message: "the small key's 10 jobs to finish" },
    );
    // The rest of the big key's backlog is not needed.
    await db.pgwake.pauseQueue(queue);
    // Each small job's place among the jobs claimed from `seen` on (the database's started_at: a
    // claim stamps all its jobs alike, and the small key's count last among them); 0 for one
    // claimed before. Handler starts (the audit) are printed beside.
    const place = (source: string, id: string) => `
      SELECT s.${id} AS id,
             (SELECT count(*)::integer FROM ${source} o
              WHERE o.queue = $1 AND o.started_at >= $2 AND o.started_at <= s.started_at) AS pos
      FROM ${source} s WHERE s.${id} = ANY ($3::bigint[]) ORDER BY pos`;
    const byClaim = await db.query<{ id: number; pos: number }>(
      place("{{schema}}.all_jobs", "id"),
      [queue, seen, small],
    );
    const byHandler = await db.query<{ id: number; pos: number }>(
      place("{{schema}}.flow_audit", "job_id"),
      [queue, seen, small],
    );
    // From the start of the small key's submission instead (claims made while it committed count).
    const submitted = (
      await db.query<{ t: Date }>(
        "SELECT min(created_at) AS t FROM {{schema}}.all_jobs WHERE id = ANY ($1::bigint[])",
        [small],
      )
    )[0]!.t;
    const fromSubmission = await db.query<{ id: number; pos: number }>(
      place("{{schema}}.all_jobs", "id"),
      [queue, submitted, small],
    );
    console.log(
      `fairness: places of the small key's 10 jobs among the starts after it was submitted: by claim ${byClaim.map((r) => r.pos).join(",")} (from the submission's start: ${fromSubmission.map((r) => r.pos).join(",")}); by handler ${byHandler.map((r) => r.pos).join(",")}`,
    );
    expect(byClaim).toHaveLength(10);
    // The bound, from the round robin (claim_limited): from `seen` on, every claim visits the
    // small key first (its key row was served least recently) and takes for each key at most a
    // share of the claim, max(1, room / 4) jobs. A worker's room is its free slots plus its
    // buffer target (here at most 32 + 32), so a share is at most 16. The small key is done within
    // ceil(10 / share) claims, in which the big key takes at most 10 + 15 jobs; a claim may find
    // the small key's row locked by one of its completions and serve only the big key (16 more).
    // 10 + 25 + 16 = 51: each small job starts within the first 50 starts or so.
    expect(Math.max(...byClaim.map((r) => r.pos))).toBeLessThanOrEqual(51);
    // A handler starts when its worker has a free slot: jobs claimed before (up to a worker's
    // buffer target, 32, in each of 4 workers) may start first.
    expect(byHandler).toHaveLength(10);
    expect(Math.max(...byHandler.map((r) => r.pos))).toBeLessThanOrEqual(51 + 4 * 32);
  });
});
