import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../../src/api/app.ts";
import { type AnyTaskDefinition, defineTask, PgwakeError, Worker } from "../../src/index.ts";
import { completeJobs } from "../../src/jobs/complete.ts";
import { limitedClaims } from "../flow/fixtures/claims.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

// Flow control's surface on real Postgres (issue 12): the library (`setQueueLimits`,
// `clearQueueLimits`, `queueLimits`, `queueKeys`, `waitingFor`), task definitions
// (`concurrencyKey`, `queueLimits`), the SQL functions, the HTTP routes, and the dedup modes. Jobs
// are claimed here through the engine's own limited claim, one step at a time.

const tenant = defineTask({
  name: "flow.tenant",
  queue: "tenants",
  schema: z.object({ tenant: z.string() }),
  concurrencyKey: (p) => p.tenant,
  handler: () => {},
});
const plain = defineTask({ name: "flow.plain", handler: () => {} });
const badKey = defineTask({
  name: "flow.badKey",
  queue: "bad-keys",
  concurrencyKey: (p: { k: unknown }) => p.k as string,
  handler: () => {},
});
const mail = defineTask({
  name: "flow.mail",
  queue: "mail",
  queueLimits: { concurrency: 3, keyConcurrency: 1 },
  handler: () => {},
});

let db: TestDb;
let claims: ReturnType<typeof limitedClaims>;
let app: ReturnType<typeof createApp>;
const TASKS = ["flow.tenant", "flow.plain", "flow.badKey", "flow.mail"];

beforeAll(async () => {
  db = await createTestDb("flow_surface", { tasks: [tenant, plain, badKey, mail] });
  claims = limitedClaims(db);
  app = createApp({ pgwake: db.pgwake, acceptUnknownTasks: false });
});

afterAll(async () => {
  await db?.close();
});

const lib = () => db.pgwake.untyped();

async function put(queue: string, queueName: string) {
  return (await lib().enqueue("flow.plain", {}, { queue: queueName, ...keyOf(queue) })).job;
}
const keyOf = (key: string) => (key ? { concurrencyKey: key } : {});

async function job(id: number) {
  const found = await db.pgwake.getJob(id);
  if (!found) throw new Error(`job ${id} not found`);
  return found;
}

describe("library: limits", () => {
  it("setQueueLimits stores every limit and returns the queue's state; queueLimits reads it; clearQueueLimits removes them", async () => {
    const flow = await db.pgwake.setQueueLimits("all-limits", {
      concurrency: 3,
      keyConcurrency: 1,
      rateLimit: 100,
      ratePeriodMs: 1_000,
      rateBurst: 5,
      keyRateLimit: 5,
      keyRatePeriodMs: 60_000,
      fair: true,
    });
    expect(flow).toMatchObject({
      name: "all-limits",
      limited: true,
      source: "operator",
      concurrency: 3,
      keyConcurrency: 1,
      rateLimit: 100,
      ratePeriodMs: 1_000,
      rateBurst: 5,
      keyRateLimit: 5,
      keyRatePeriodMs: 60_000,
      keyRateBurst: null,
      fair: true,
      running: 0,
      // A bucket starts full: its burst.
      tokens: 5,
      throttled: 0,
    });
    expect(await db.pgwake.queueLimits("all-limits")).toEqual(
      [flow].map((f) => ({ ...f, updatedAt: expect.any(Date) })),
    );
    expect((await db.pgwake.queueLimits()).map((f) => f.name)).toContain("all-limits");

    // Setting replaces all of them: what is not given is removed.
    const fewer = await db.pgwake.setQueueLimits("all-limits", { concurrency: 2 });
    expect(fewer).toMatchObject({
      concurrency: 2,
      keyConcurrency: null,
      rateLimit: null,
      fair: false,
    });

    const cleared = await db.pgwake.clearQueueLimits("all-limits");
    expect(cleared).toMatchObject({
      limited: false,
      source: null,
      concurrency: null,
      tokens: null,
    });
  });

  const BAD_LIMITS = [
    { concurrency: 0 },
    { keyConcurrency: -1 },
    { rateLimit: 1.5 },
    { rateLimit: 10, ratePeriodMs: 0 },
  ];

  it("refuses bad limits, changing nothing", async () => {
    await db.pgwake.setQueueLimits("refused", { concurrency: 4 });
    for (const bad of BAD_LIMITS) {
      await expect(db.pgwake.setQueueLimits("refused", bad), JSON.stringify(bad)).rejects.toThrow();
    }
    // A rejected promise, not an exception thrown before one exists.
    let promise: Promise<unknown> | undefined;
    expect(() => {
      promise = db.pgwake.setQueueLimits("bad name", { concurrency: 1 });
    }).not.toThrow();
    await expect(promise).rejects.toMatchObject({ code: "INVALID_OPTIONS" });
    expect((await db.pgwake.queueLimits("refused"))[0]).toMatchObject({ concurrency: 4 });
    expect(await db.pgwake.queueLimits("bad name")).toEqual([]);
  });

  // (The library passed limits to SQL unchecked: the database's raw error came back. Found by
  // this test, fixed in 33c50f4.)
  it("refuses bad limits with a PgwakeError INVALID_OPTIONS", async () => {
    for (const bad of BAD_LIMITS) {
      const error = await db.pgwake.setQueueLimits("refused", bad).catch((e: unknown) => e);
      expect(error, JSON.stringify(bad)).toBeInstanceOf(PgwakeError);
      expect((error as PgwakeError).code, JSON.stringify(bad)).toBe("INVALID_OPTIONS");
    }
  });
});

describe("library: concurrency keys", () => {
  it("gives jobs without a key the shared key '' in a keyed queue, also jobs waiting when it became keyed", async () => {
    const before = await put("", "keyed-later");
    expect(before.concurrencyKey).toBeNull();
    await db.pgwake.setQueueLimits("keyed-later", { keyConcurrency: 1 });
    expect((await job(before.id)).concurrencyKey).toBe("");
    const after = await put("", "keyed-later");
    expect(after.concurrencyKey).toBe("");
    // They share it: one at a time.
    const taken = await claims.claim("w-shared", "keyed-later", TASKS);
    expect(taken.map((j) => j.id)).toEqual([before.id]);
  });

  it("derives a job's key from its payload (task definition); an explicit key wins; a bad derived key is refused", async () => {
    const derived = await lib().enqueue("flow.tenant", { tenant: "acme" });
    expect(derived.job.concurrencyKey).toBe("acme");
    const explicit = await lib().enqueue(
      "flow.tenant",
      { tenant: "acme" },
      { concurrencyKey: "other" },
    );
    expect(explicit.job.concurrencyKey).toBe("other");
    for (const k of ["", 42, "x".repeat(256)]) {
      await expect(lib().enqueue("flow.badKey", { k }), JSON.stringify(k)).rejects.toMatchObject({
        code: "INVALID_OPTIONS",
      });
    }
    // null or undefined: no key.
    expect((await lib().enqueue("flow.badKey", { k: null })).job.concurrencyKey).toBeNull();
  });
});

describe("library: jobs held back by a limit", () => {
  it("wait as pending, spend no attempt, and say why (waitingFor)", async () => {
    // Per-key concurrency 1.
    await db.pgwake.setQueueLimits("kc", { keyConcurrency: 1 });
    const k1 = await put("k", "kc");
    const k2 = await put("k", "kc");
    const k3 = await put("k", "kc");
    const m1 = await put("m", "kc");
    for (let round = 0; round < 3; round++) await claims.claim("w-kc", "kc", TASKS);
    expect((await job(k1.id)).status).toBe("running");
    expect((await job(m1.id)).status).toBe("running");
    for (const id of [k2.id, k3.id]) {
      expect(await job(id)).toMatchObject({ status: "pending", attempts: 0 });
      expect(await db.pgwake.waitingFor(id)).toEqual({
        reason: "key_concurrency",
        key: "k",
        limit: 1,
        running: 1,
      });
    }
    expect(await db.pgwake.waitingFor(k1.id)).toBeNull();
    // Busiest first; '' is the key of the jobs submitted without one.
    expect(await db.pgwake.queueKeys("kc")).toEqual([
      { key: "k", running: 1, tokens: null, pending: 2 },
      { key: "m", running: 1, tokens: null, pending: 0 },
      { key: "", running: 0, tokens: null, pending: 0 },
    ]);

    // Queue concurrency 1.
    await db.pgwake.setQueueLimits("qc", { concurrency: 1 });
    const q1 = await put("", "qc");
    const q2 = await put("", "qc");
    await claims.claim("w-qc", "qc", TASKS);
    await claims.claim("w-qc", "qc", TASKS);
    expect((await job(q1.id)).status).toBe("running");
    expect(await job(q2.id)).toMatchObject({ status: "pending", attempts: 0 });
    expect(await db.pgwake.waitingFor(q2.id)).toEqual({
      reason: "queue_concurrency",
      limit: 1,
      running: 1,
    });
    expect((await db.pgwake.queueLimits("qc"))[0]).toMatchObject({ running: 1, throttled: 1 });

    // Queue rate: 1 a minute, the bucket's one token spent by the first.
    await db.pgwake.setQueueLimits("qr", { rateLimit: 1, ratePeriodMs: 60_000 });
    const r1 = await put("", "qr");
    const r2 = await put("", "qr");
    await claims.claim("w-qr", "qr", TASKS);
    await claims.claim("w-qr", "qr", TASKS);
    expect((await job(r1.id)).status).toBe("running");
    expect(await job(r2.id)).toMatchObject({ status: "pending", attempts: 0 });
    const rate = await db.pgwake.waitingFor(r2.id);
    expect(rate).toMatchObject({ reason: "queue_rate", limit: 1, periodMs: 60_000 });
    expect((rate as { nextTokenMs: number }).nextTokenMs).toBeGreaterThan(50_000);
    expect((rate as { nextTokenMs: number }).nextTokenMs).toBeLessThanOrEqual(60_000);

    // Key rate: 1 a minute per key; another key is not held back.
    await db.pgwake.setQueueLimits("kr", { keyRateLimit: 1, keyRatePeriodMs: 60_000 });
    const a1 = await put("a", "kr");
    const a2 = await put("a", "kr");
    const b1 = await put("b", "kr");
    await claims.claim("w-kr", "kr", TASKS);
    await claims.claim("w-kr", "kr", TASKS);
    expect((await job(a1.id)).status).toBe("running");
    expect((await job(b1.id)).status).toBe("running");
    expect(await job(a2.id)).toMatchObject({ status: "pending", attempts: 0 });
    expect(await db.pgwake.waitingFor(a2.id)).toMatchObject({
      reason: "key_rate",
      key: "a",
      limit: 1,
      periodMs: 60_000,
    });

    // Key order: the key has room, but an earlier job of the key goes first.
    await db.pgwake.setQueueLimits("ko", { keyConcurrency: 2 });
    const z1 = await put("z", "ko");
    const z2 = await put("z", "ko");
    expect(await db.pgwake.waitingFor(z1.id)).toEqual({ reason: "ready" });
    expect(await db.pgwake.waitingFor(z2.id)).toEqual({ reason: "key_order", key: "z" });

    // Paused, not due yet, unlimited.
    await db.pgwake.pauseQueue("kc");
    expect(await db.pgwake.waitingFor(k2.id)).toEqual({ reason: "queue_paused" });
    await db.pgwake.resumeQueue("kc");
    const later = (await lib().enqueue("flow.plain", {}, { queue: "kc", delayMs: 60_000 })).job;
    expect(await db.pgwake.waitingFor(later.id)).toEqual({
      reason: "run_at",
      runAt: later.runAt.toISOString(),
    });
    const free = await put("", "unlimited");
    expect(await db.pgwake.waitingFor(free.id)).toEqual({ reason: "ready" });
  });

  it("start once the slot is freed: the next job of the key runs, its attempt counted once", async () => {
    await db.pgwake.setQueueLimits("serial", { keyConcurrency: 1 });
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await put("s", "serial")).id);
    for (const [i, id] of ids.entries()) {
      const taken = await claims.claim("w-serial", "serial", TASKS);
      // A strict lane: one at a time, in submission order.
      expect(taken.map((j) => j.id)).toEqual([id]);
      expect(await claims.claim("w-serial", "serial", TASKS)).toEqual([]);
      const done = await completeJobs(db.pool, claims.sql, "w-serial", [
        { id, attempt: 1, result: { i } },
      ]);
      expect([...done]).toEqual([id]);
    }
    const finished = await Promise.all(ids.map(job));
    expect(finished.map((j) => [j.status, j.attempts])).toEqual([
      ["completed", 1],
      ["completed", 1],
      ["completed", 1],
    ]);
    expect((await db.pgwake.queueLimits("serial"))[0]!.running).toBe(0);
  });
});

describe("dedup modes", () => {
  /** Claims the default queue's ready jobs (no limit there) and completes them. */
  async function runDefaultQueue(): Promise<number[]> {
    await db.pgwake.setQueueLimits("default", { concurrency: 100 });
    const taken = await claims.claim("w-dedup", "default", TASKS, 100);
    if (taken.length > 0) {
      await completeJobs(
        db.pool,
        claims.sql,
        "w-dedup",
        taken.map((j) => ({ id: j.id, attempt: j.attempts, result: null })),
      );
    }
    return taken.map((j) => j.id);
  }

  it("active: a duplicate while the job waits or runs, a new job once it finished (or was cancelled)", async () => {
    const submit = (n: number) =>
      lib().enqueue("flow.plain", { n }, { idempotencyKey: "act-1", keyMode: "active" });
    const first = await submit(1);
    expect(first.duplicate).toBe(false);
    const again = await submit(2);
    expect(again).toMatchObject({ duplicate: true, job: { id: first.job.id, payload: { n: 1 } } });
    // Running: still a duplicate.
    await db.pgwake.setQueueLimits("default", { concurrency: 100 });
    const taken = await claims.claim("w-dedup", "default", TASKS, 100);
    expect(taken.map((j) => j.id)).toContain(first.job.id);
    expect((await submit(3)).job.id).toBe(first.job.id);
    await completeJobs(
      db.pool,
      claims.sql,
      "w-dedup",
      taken.map((j) => ({ id: j.id, attempt: j.attempts, result: null })),
    );
    // Finished: the key is free.
    const next = await submit(4);
    expect(next.duplicate).toBe(false);
    expect(next.job.id).not.toBe(first.job.id);
    await db.pgwake.cancel([next.job.id]);
    const afterCancel = await submit(5);
    expect(afterCancel.duplicate).toBe(false);
    expect(afterCancel.job.id).not.toBe(next.job.id);
    await db.pgwake.cancel([afterCancel.job.id]);
  });

  // (`retry` revived a job without reserving its key again: a second live job with the key. Found
  // by this test, fixed in 943af79.)
  it("active: a job revived by retry holds its key again (a duplicate while it waits)", async () => {
    const submit = () =>
      lib().enqueue("flow.plain", {}, { idempotencyKey: "act-revived", keyMode: "active" });
    const first = await submit();
    await db.pgwake.cancel([first.job.id]);
    const [revived] = await db.pgwake.retry([first.job.id]);
    expect(revived).toMatchObject({ id: first.job.id, status: "pending" });
    const again = await submit().catch((error: unknown) => error);
    expect(again).toMatchObject({ duplicate: true, job: { id: first.job.id } });
  });

  it("retain (the default) keeps the key after the job finished", async () => {
    const first = await lib().enqueue("flow.plain", {}, { idempotencyKey: "keep-1" });
    await runDefaultQueue();
    expect((await job(first.job.id)).status).toBe("completed");
    const again = await lib().enqueue("flow.plain", {}, { idempotencyKey: "keep-1" });
    expect(again).toMatchObject({ duplicate: true, job: { id: first.job.id } });
  });

  it("debounce: a newer submission replaces the waiting job's payload and run time and returns it; once it started, a new job", async () => {
    const submit = (n: number, delayMs?: number) =>
      lib().enqueue(
        "flow.plain",
        { n },
        { idempotencyKey: "deb-1", keyMode: "debounce", ...(delayMs ? { delayMs } : {}) },
      );
    const first = await submit(1, 60_000);
    expect(first.job.status).toBe("scheduled");
    const pushed = await submit(2, 120_000);
    expect(pushed.duplicate).toBe(true);
    expect(pushed.job.id).toBe(first.job.id);
    const stored = await job(first.job.id);
    expect(stored.payload).toEqual({ n: 2 });
    expect(stored.runAt.getTime()).toBeGreaterThan(first.job.runAt.getTime() + 50_000);
    // Due now: pending, the newest payload.
    const now = await submit(3);
    expect(now).toMatchObject({ duplicate: true, job: { id: first.job.id } });
    expect(await job(first.job.id)).toMatchObject({ status: "pending", payload: { n: 3 } });
    // Started: the next submission is a new job.
    const ran = await runDefaultQueue();
    expect(ran).toContain(first.job.id);
    const fresh = await submit(4);
    expect(fresh.duplicate).toBe(false);
    expect(fresh.job.id).not.toBe(first.job.id);
    expect(fresh.job.payload).toEqual({ n: 4 });
    expect((await job(first.job.id)).payload).toEqual({ n: 3 });
    await db.pgwake.cancel([fresh.job.id]);
  });

  it("refuses a key mode without an idempotency key, or an unknown one", async () => {
    await expect(lib().enqueue("flow.plain", {}, { keyMode: "active" })).rejects.toMatchObject({
      code: "INVALID_OPTIONS",
    });
    await expect(
      lib().enqueue("flow.plain", {}, { idempotencyKey: "x", keyMode: "sometimes" as "active" }),
    ).rejects.toMatchObject({ code: "INVALID_OPTIONS" });
  });
});

describe("task definitions' queueLimits", () => {
  const startAndStop = async (tasks = [mail]) => {
    const worker = db.pgwake.worker({ tasks, queues: ["mail"], concurrency: 1, notify: false });
    await worker.start();
    await worker.stop({ graceMs: 1_000 });
  };

  it("are set by workers as they start (source tasks); an operator's limits win; cleared, the defaults apply again at the next start", async () => {
    await startAndStop();
    expect((await db.pgwake.queueLimits("mail"))[0]).toMatchObject({
      concurrency: 3,
      keyConcurrency: 1,
      source: "tasks",
      limited: true,
    });
    await db.pgwake.setQueueLimits("mail", { concurrency: 7 });
    await startAndStop();
    expect((await db.pgwake.queueLimits("mail"))[0]).toMatchObject({
      concurrency: 7,
      keyConcurrency: null,
      source: "operator",
    });
    const cleared = await db.pgwake.clearQueueLimits("mail");
    expect(cleared).toMatchObject({ limited: false, source: null });
    await startAndStop();
    expect((await db.pgwake.queueLimits("mail"))[0]).toMatchObject({
      concurrency: 3,
      keyConcurrency: 1,
      source: "tasks",
    });
  });

  it("must agree between tasks of one queue: a worker of two that differ is refused (INVALID_OPTIONS)", () => {
    const other = defineTask({
      name: "flow.mail2",
      queue: "mail",
      queueLimits: { concurrency: 4 },
      handler: () => {},
    });
    const same = defineTask({
      name: "flow.mail3",
      queue: "mail",
      queueLimits: { concurrency: 3, keyConcurrency: 1 },
      handler: () => {},
    });
    const make = (tasks: AnyTaskDefinition[]) => () =>
      new Worker({ connectionString: db.url, schema: db.schema, tasks });
    expect(make([mail, other])).toThrow(
      expect.objectContaining({
        code: "INVALID_OPTIONS",
        message: expect.stringMatching(/queueLimits/),
      }),
    );
    // The same limits are fine.
    const worker = make([mail, same])();
    expect(worker.workerState).toBe("idle");
    void worker.stop();
  });
});

describe("SQL", () => {
  it("set_queue_limits takes named limits; enqueue takes a concurrency key", async () => {
    const [row] = await db.query<{
      concurrency: number;
      key_concurrency: number;
      limits_source: string;
    }>(
      "SELECT concurrency, key_concurrency, limits_source FROM {{schema}}.set_queue_limits('sql-q', concurrency => 3, key_concurrency => 1, rate_limit => 10, rate_period_ms => 60000)",
    );
    expect(row).toMatchObject({ concurrency: 3, key_concurrency: 1, limits_source: "operator" });
    expect((await db.pgwake.queueLimits("sql-q"))[0]).toMatchObject({
      concurrency: 3,
      keyConcurrency: 1,
      rateLimit: 10,
      ratePeriodMs: 60_000,
    });
    const [enq] = await db.query<{ id: number; key: string; duplicate: boolean }>(
      "SELECT (job).id, (job).concurrency_key AS key, duplicate FROM {{schema}}.enqueue('flow.plain', '{}', queue => 'sql-q', concurrency_key => 'tenant-9')",
    );
    expect(enq).toMatchObject({ key: "tenant-9", duplicate: false });
    const taken = await claims.claim("w-sql", "sql-q", TASKS);
    expect(taken.map((j) => j.id)).toEqual([enq!.id]);
    expect(await db.pgwake.queueKeys("sql-q")).toContainEqual({
      key: "tenant-9",
      running: 1,
      tokens: null,
      pending: 0,
    });
    // Without a key in a keyed queue: the shared key ''.
    const [unkeyed] = await db.query<{ key: string }>(
      "SELECT (job).concurrency_key AS key FROM {{schema}}.enqueue('flow.plain', '{}', queue => 'sql-q')",
    );
    expect(unkeyed!.key).toBe("");
  });

  it("refuses bad limits and sources", async () => {
    await expect(
      db.query("SELECT {{schema}}.set_queue_limits('sql-bad', concurrency => 0)"),
    ).rejects.toMatchObject({ code: "23514" });
    await expect(
      db.query("SELECT {{schema}}.set_queue_limits('sql-bad', concurrency => 1, source => 'me')"),
    ).rejects.toMatchObject({ code: "22023" });
  });
});

describe("HTTP", () => {
  const send = (method: string, path: string, body?: unknown) =>
    app.request(path, {
      method,
      ...(body === undefined
        ? {}
        : {
            headers: { "content-type": "application/json" },
            body: typeof body === "string" ? body : JSON.stringify(body),
          }),
    });
  const queueRow = async (name: string) =>
    (await db.query("SELECT name FROM {{schema}}.queues WHERE name = $1", [name])).length;
  const jobCount = async () =>
    (await db.query<{ n: number }>("SELECT count(*)::integer AS n FROM {{schema}}.all_jobs"))[0]!.n;

  it("PUT, GET and DELETE /queues/:name/limits", async () => {
    // Unknown queue: 404 unless ?create=true; nothing made.
    const unknown = await send("PUT", "/queues/http-q/limits", { concurrency: 2 });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe(
      "QUEUE_NOT_FOUND",
    );
    expect(await queueRow("http-q")).toBe(0);
    expect((await send("GET", "/queues/http-q/limits")).status).toBe(404);

    const set = await send("PUT", "/queues/http-q/limits?create=true", {
      concurrency: 2,
      keyConcurrency: 1,
      rateLimit: 50,
      rateBurst: 2,
      keyRateLimit: 5,
      keyRatePeriodMs: 60_000,
      fair: true,
    });
    expect(set.status).toBe(200);
    const body = (await set.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      name: "http-q",
      limited: true,
      flow: {
        concurrency: 2,
        keyConcurrency: 1,
        rateLimit: 50,
        ratePeriodMs: 1_000,
        rateBurst: 2,
        keyRateLimit: 5,
        keyRatePeriodMs: 60_000,
        keyRateBurst: null,
        fair: true,
        source: "operator",
        running: 0,
        tokens: 2,
        throttled: 0,
      },
    });
    expect(typeof body.updatedAt).toBe("string");
    const got = await send("GET", "/queues/http-q/limits");
    expect(got.status).toBe(200);
    expect(await got.json()).toMatchObject({
      name: "http-q",
      limited: true,
      flow: { concurrency: 2 },
    });
    expect((await db.pgwake.queueLimits("http-q"))[0]).toMatchObject({
      concurrency: 2,
      fair: true,
    });

    const removed = await send("DELETE", "/queues/http-q/limits");
    expect(removed.status).toBe(200);
    expect(await removed.json()).toMatchObject({
      limited: false,
      flow: { concurrency: null, keyConcurrency: null, fair: false, source: null },
    });
    expect((await send("DELETE", "/queues/nobody-knows/limits")).status).toBe(404);
  });

  it("refuses bad limits with 400 VALIDATION_FAILED, changing and creating nothing", async () => {
    await db.pgwake.setQueueLimits("http-kept", { concurrency: 5 });
    for (const bad of [
      { concurrency: 0 },
      { concurrency: -3 },
      { concurrency: 1.5 },
      { concurrency: "3" },
      { keyConcurrency: 2 ** 31 },
      { rateLimit: 10, ratePeriodMs: 0 },
      { fair: "yes" },
      { concurency: 3 },
      [],
      "{not json",
    ]) {
      for (const queue of ["http-kept", "http-new"]) {
        const res = await send("PUT", `/queues/${queue}/limits?create=true`, bad);
        expect(res.status, `${queue} ${JSON.stringify(bad)}`).toBe(400);
        const error = ((await res.json()) as { error: { code: string } }).error;
        expect(error.code, JSON.stringify(bad)).toBe(
          bad === "{not json" ? "INVALID_JSON" : "VALIDATION_FAILED",
        );
      }
    }
    expect((await db.pgwake.queueLimits("http-kept"))[0]).toMatchObject({ concurrency: 5 });
    expect(await queueRow("http-new")).toBe(0);
    expect(
      (await send("PUT", "/queues/bad%20name/limits?create=true", { concurrency: 1 })).status,
    ).toBe(400);
  });

  it("GET /queues/:name/keys and GET /queues (field flow)", async () => {
    await db.pgwake.setQueueLimits("http-keys", { keyConcurrency: 1, concurrency: 10 });
    for (const key of ["t1", "t1", "t2"]) await put(key, "http-keys");
    await claims.claim("w-http", "http-keys", TASKS);
    await put("", "http-free");
    const keys = await send("GET", "/queues/http-keys/keys");
    expect(keys.status).toBe(200);
    expect(((await keys.json()) as { keys: unknown[] }).keys).toEqual([
      { key: "t1", running: 1, tokens: null, pending: 1 },
      { key: "t2", running: 1, tokens: null, pending: 0 },
      { key: "", running: 0, tokens: null, pending: 0 },
    ]);
    expect((await send("GET", "/queues/http-keys/keys?limit=1")).status).toBe(200);
    expect((await send("GET", "/queues/http-keys/keys?limit=0")).status).toBe(400);
    expect((await send("GET", "/queues/nobody-knows/keys")).status).toBe(404);

    const list = await send("GET", "/queues");
    expect(list.status).toBe(200);
    const queues = ((await list.json()) as { queues: { name: string; flow: unknown }[] }).queues;
    expect(queues.find((q) => q.name === "http-keys")!.flow).toMatchObject({
      concurrency: 10,
      keyConcurrency: 1,
      running: 2,
      throttled: 1,
      keys: 3,
      busiestKeys: [
        { key: "t1", running: 1, tokens: null },
        { key: "t2", running: 1, tokens: null },
      ],
    });
    expect(queues.find((q) => q.name === "http-free")!.flow).toBeNull();
  });

  it("GET /jobs/:id says what a job waits for", async () => {
    await db.pgwake.setQueueLimits("http-wait", { keyConcurrency: 1 });
    const first = await put("acct-7", "http-wait");
    const second = await put("acct-7", "http-wait");
    await claims.claim("w-http-wait", "http-wait", TASKS);
    const res = await send("GET", `/jobs/${second.id}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      id: second.id,
      status: "pending",
      attempts: 0,
      concurrencyKey: "acct-7",
      waitingFor: { reason: "key_concurrency", key: "acct-7", limit: 1, running: 1 },
    });
    expect(await (await send("GET", `/jobs/${first.id}`)).json()).toMatchObject({
      status: "running",
      waitingFor: null,
    });
  });

  it("POST /jobs takes concurrencyKey and keyMode; bad ones get 400 VALIDATION_FAILED and create nothing", async () => {
    const created = await send("POST", "/jobs", {
      task: "flow.plain",
      queue: "http-post",
      concurrencyKey: "tenant-1",
      idempotencyKey: "post-1",
      keyMode: "active",
    });
    expect(created.status).toBe(201);
    const first = ((await created.json()) as { job: { id: number; concurrencyKey: string } }).job;
    expect(first.concurrencyKey).toBe("tenant-1");
    const dup = await send("POST", "/jobs", {
      task: "flow.plain",
      queue: "http-post",
      idempotencyKey: "post-1",
      keyMode: "active",
    });
    expect(dup.status).toBe(200);
    expect(await dup.json()).toMatchObject({ duplicate: true, job: { id: first.id } });
    // The task derives the key from the payload.
    const derived = await send("POST", "/jobs", {
      task: "flow.tenant",
      payload: { tenant: "initech" },
    });
    expect(derived.status).toBe(201);
    expect(await derived.json()).toMatchObject({
      job: { concurrencyKey: "initech", queue: "tenants" },
    });

    const before = await jobCount();
    for (const bad of [
      { task: "flow.plain", concurrencyKey: "" },
      { task: "flow.plain", concurrencyKey: "k".repeat(256) },
      { task: "flow.plain", concurrencyKey: 7 },
      { task: "flow.plain", keyMode: "active" },
      { task: "flow.plain", idempotencyKey: "x", keyMode: "sometimes" },
      { task: "flow.badKey", payload: { k: "" } },
    ]) {
      const res = await send("POST", "/jobs", bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
      const code = ((await res.json()) as { error: { code: string } }).error.code;
      expect(["VALIDATION_FAILED", "INVALID_OPTIONS"], JSON.stringify(bad)).toContain(code);
    }
    const batch = await send("POST", "/jobs/batch", {
      jobs: [
        { task: "flow.plain", concurrencyKey: "ok" },
        { task: "flow.plain", concurrencyKey: "" },
      ],
    });
    expect(batch.status).toBe(400);
    expect(await jobCount()).toBe(before);
  });
});
