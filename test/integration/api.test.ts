import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../../src/api/app.ts";
import { TIMESTAMP_PATTERN } from "../../src/api/schemas.ts";
import { defineTask, Pgwake } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const sendEmail = defineTask({
  name: "send-email",
  schema: z.object({ to: z.email() }),
  queue: "mail",
  handler: () => {},
  example: { to: "ada@example.com" },
});

const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: typeof body === "string" ? body : JSON.stringify(body),
});

async function expectError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/application\/json/);
  const body = (await res.json()) as {
    error: { code: string; message: string; details?: unknown };
  };
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe("string");
  return body.error;
}

describe("HTTP API routes (app.request)", () => {
  let db: TestDb;
  let app: ReturnType<typeof createApp>;
  const jobCount = async () =>
    Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM {{schema}}.jobs"))[0]!.n);

  beforeAll(async () => {
    db = await createTestDb("api_routes", { tasks: [sendEmail] });
    app = createApp({
      pgwake: db.pgwake,
      acceptUnknownTasks: false,
      bodyLimitBytes: 4096,
      batchLimit: 5,
    });
  });
  afterAll(async () => {
    await db.close();
  });

  it("serves /health without the database and /ready with it", async () => {
    expect(await (await app.request("/health")).json()).toEqual({ status: "ok" });
    const ready = await app.request("/ready");
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { schema: { current: number; latest: number } };
    expect(body.schema.current).toBe(body.schema.latest);
  });

  it("submits a job (201), returns the original on a repeated key (200), stores the request id", async () => {
    const first = await app.request(
      "/jobs",
      json(
        {
          task: "send-email",
          payload: { to: "ada@example.com" },
          idempotencyKey: "order-1",
          priority: 5,
        },
        { "x-request-id": "req-abc.1" },
      ),
    );
    expect(first.status).toBe(201);
    expect(first.headers.get("x-request-id")).toBe("req-abc.1");
    const created = (await first.json()) as { job: Record<string, unknown>; duplicate: boolean };
    expect(created.duplicate).toBe(false);
    expect(created.job).toMatchObject({
      task: "send-email",
      queue: "mail",
      status: "pending",
      priority: 5,
      requestId: "req-abc.1",
      idempotencyKey: "order-1",
    });
    expect(first.headers.get("location")).toBe(`/jobs/${created.job.id}`);
    expect(typeof created.job.createdAt).toBe("string");
    expect(new Date(created.job.createdAt as string).toISOString()).toBe(created.job.createdAt);

    const again = await app.request(
      "/jobs",
      json(
        { task: "send-email", payload: { to: "ada@example.com" } },
        { "Idempotency-Key": "order-1" },
      ),
    );
    expect(again.status).toBe(200);
    const dup = (await again.json()) as {
      job: { id: number; requestId: string };
      duplicate: boolean;
    };
    expect(dup).toMatchObject({
      duplicate: true,
      job: { id: created.job.id, requestId: "req-abc.1" },
    });

    const read = await app.request(`/jobs/${created.job.id}`);
    expect(read.status).toBe(200);
    expect(await read.json()).toMatchObject({
      id: created.job.id,
      requestId: "req-abc.1",
      payload: { to: "ada@example.com" },
      attempts: 0,
      maxAttempts: 10,
      result: null,
      lastError: null,
    });
  });

  it("refuses a known task's bad payload with 422 and the schema's issues, and unknown tasks", async () => {
    const before = await jobCount();
    const bad = await expectError(
      await app.request("/jobs", json({ task: "send-email", payload: { to: "nope" } })),
      422,
      "INVALID_PAYLOAD",
    );
    expect(bad.details).toEqual([expect.objectContaining({ path: "to" })]);
    const unknown = await expectError(
      await app.request("/jobs", json({ task: "nobody-knows" })),
      422,
      "UNKNOWN_TASK",
    );
    expect(unknown.details).toEqual({ knownTasks: ["send-email"] });
    expect(await jobCount()).toBe(before);
  });

  it("names every invalid field, refuses bad JSON, wrong types, big bodies, with no row created", async () => {
    const before = await jobCount();
    const invalid = await expectError(
      await app.request("/jobs", json({ task: "", priority: 5000, delayMs: -1, surprise: true })),
      400,
      "VALIDATION_FAILED",
    );
    expect((invalid.details as Array<{ path: string }>).map((d) => d.path).sort()).toEqual([
      "delayMs",
      "priority",
      "surprise",
      "task",
    ]);
    await expectError(
      await app.request(
        "/jobs",
        json({ task: "send-email", runAt: "2030-01-01T00:00:00Z", delayMs: 5 }),
      ),
      400,
      "VALIDATION_FAILED",
    );
    await expectError(await app.request("/jobs", json("{not json")), 400, "INVALID_JSON");
    await expectError(await app.request("/jobs", json("")), 400, "INVALID_JSON");
    await expectError(await app.request("/jobs", json("[1,2]")), 400, "VALIDATION_FAILED");
    await expectError(
      await app.request("/jobs", {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: "{}",
      }),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
    await expectError(
      await app.request("/jobs", { method: "POST", body: "{}" }),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
    const big = JSON.stringify({
      task: "send-email",
      payload: { to: "a@b.co", pad: "x".repeat(5000) },
    });
    await expectError(
      await app.request("/jobs", json(big, { "content-length": String(Buffer.byteLength(big)) })),
      413,
      "PAYLOAD_TOO_LARGE",
    );
    // A streamed body with no declared length is counted as it arrives.
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode(" ".repeat(1000)));
        controller.close();
      },
    });
    const streamed = await app.request("/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    await expectError(streamed, 413, "PAYLOAD_TOO_LARGE");
    // What Postgres could not store is refused before it reaches a shared statement.
    await expectError(
      await app.request("/jobs", json(`{"task":"send-email","idempotencyKey":"a\\u0000b"}`)),
      400,
      "VALIDATION_FAILED",
    );
    const deep = `{"task":"send-email","payload":${"[".repeat(100)}${"]".repeat(100)}}`;
    const tooDeep = await expectError(
      await app.request("/jobs", json(deep)),
      400,
      "VALIDATION_FAILED",
    );
    expect(tooDeep.details).toEqual([expect.objectContaining({ code: "too_deep" })]);
    expect(await jobCount()).toBe(before);
  });

  it("answers ids: 400 when not numeric, 404 when unknown; 405 with Allow; 404 for unknown routes", async () => {
    await expectError(await app.request("/jobs/abc"), 400, "INVALID_ID");
    await expectError(await app.request("/jobs/0"), 400, "INVALID_ID");
    await expectError(await app.request("/jobs/99999999999999999999"), 400, "INVALID_ID");
    await expectError(await app.request("/jobs/987654321"), 404, "JOB_NOT_FOUND");
    await expectError(await app.request("/jobs/987654321/events"), 404, "JOB_NOT_FOUND");
    await expectError(
      await app.request("/jobs/987654321/cancel", { method: "POST" }),
      404,
      "JOB_NOT_FOUND",
    );
    const notAllowed = await app.request("/jobs/1", { method: "DELETE" });
    await expectError(notAllowed, 405, "METHOD_NOT_ALLOWED");
    expect(notAllowed.headers.get("allow")).toContain("GET");
    const putJobs = await app.request("/jobs", { method: "PUT" });
    expect(putJobs.status).toBe(405);
    expect(putJobs.headers.get("allow")).toContain("POST");
    await expectError(await app.request("/nowhere"), 404, "NOT_FOUND");
  });

  it("submits a batch atomically with per-item idempotency, and refuses it whole when one item is bad", async () => {
    const res = await app.request(
      "/jobs/batch",
      json({
        jobs: [
          { task: "send-email", payload: { to: "a@x.io" } },
          { task: "send-email", payload: { to: "b@x.io" }, idempotencyKey: "b1" },
          { task: "send-email", payload: { to: "c@x.io" }, idempotencyKey: "b1" },
        ],
      }),
    );
    expect(res.status).toBe(201);
    const body = (await res.json()) as {
      items: Array<{ job: { id: number; payload: { to: string } }; duplicate: boolean }>;
      created: number;
      duplicates: number;
    };
    expect(body.items.map((i) => i.duplicate)).toEqual([false, false, true]);
    expect(body.items[0]!.job.payload.to).toBe("a@x.io");
    expect(body.items[2]!.job.id).toBe(body.items[1]!.job.id);
    expect([body.created, body.duplicates]).toEqual([2, 1]);

    const before = await jobCount();
    const bad = await expectError(
      await app.request(
        "/jobs/batch",
        json({
          jobs: [
            { task: "send-email", payload: { to: "ok@x.io" } },
            { task: "send-email", payload: { to: 1 } },
          ],
        }),
      ),
      422,
      "INVALID_PAYLOAD",
    );
    expect(bad.details).toEqual([expect.objectContaining({ index: 1, code: "INVALID_PAYLOAD" })]);
    const tooMany = Array.from({ length: 6 }, () => ({
      task: "send-email",
      payload: { to: "a@x.io" },
    }));
    await expectError(
      await app.request("/jobs/batch", json({ jobs: tooMany })),
      400,
      "VALIDATION_FAILED",
    );
    await expectError(
      await app.request("/jobs/batch", json({ jobs: [] })),
      400,
      "VALIDATION_FAILED",
    );
    expect(await jobCount()).toBe(before);
  });

  it("lists jobs newest first with filters and keyset pagination", async () => {
    // A process that knows no task accepts any name.
    const lister = createApp({ pgwake: new Pgwake({ pool: db.pool, schema: db.schema }) });
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await lister.request(
        "/jobs",
        json({ task: "listed", queue: "list-q", payload: { i } }),
      );
      ids.push(((await res.json()) as { job: { id: number } }).job.id);
    }
    await lister.request(`/jobs/${ids[0]}/cancel`, { method: "POST" });
    const seen: number[] = [];
    let cursor: number | null = null;
    do {
      const res = await lister.request(
        `/jobs?queue=list-q&limit=2${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(res.status).toBe(200);
      const page = (await res.json()) as { jobs: Array<{ id: number }>; nextCursor: number | null };
      // The cursor is the id the next page starts below: an integer, like the ids.
      if (page.nextCursor !== null) expect(page.nextCursor).toBe(page.jobs.at(-1)!.id);
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    const cancelled = (await (
      await lister.request("/jobs?queue=list-q&status=cancelled")
    ).json()) as { jobs: Array<{ id: number }> };
    expect(cancelled.jobs.map((j) => j.id)).toEqual([ids[0]]);
    const both = (await (
      await lister.request("/jobs?task=listed&status=pending,cancelled&limit=500")
    ).json()) as { jobs: unknown[] };
    expect(both.jobs).toHaveLength(5);
    await expectError(await lister.request("/jobs?limit=0"), 400, "VALIDATION_FAILED");
    await expectError(await lister.request("/jobs?status=bogus"), 400, "VALIDATION_FAILED");
    await expectError(await lister.request("/jobs?cursor=-1"), 400, "VALIDATION_FAILED");
    await expectError(await lister.request("/jobs?what=1"), 400, "VALIDATION_FAILED");

    // A time range, decided by the server: the jobs created from the third on.
    const created = await Promise.all(
      ids.map(async (id) => (await db.pgwake.getJob(id))!.createdAt),
    );
    const after = encodeURIComponent(created[2]!.toISOString());
    const recent = (await (
      await lister.request(`/jobs?queue=list-q&createdAfter=${after}`)
    ).json()) as { jobs: Array<{ id: number }> };
    expect(recent.jobs.map((j) => j.id)).toEqual(
      ids.filter((_, i) => created[i]!.getTime() >= created[2]!.getTime()).reverse(),
    );
    const before = (await (
      await lister.request(`/jobs?queue=list-q&createdBefore=${after}`)
    ).json()) as { jobs: Array<{ id: number }> };
    expect(before.jobs.length + recent.jobs.length).toBe(5);
    await expectError(
      await lister.request("/jobs?createdAfter=yesterday"),
      400,
      "VALIDATION_FAILED",
    );
  });

  it("pages a job's events, cancels (409 once finished) and retries (409 unless failed or cancelled)", async () => {
    const created = (await (
      await app.request("/jobs", json({ task: "send-email", payload: { to: "e@x.io" } }))
    ).json()) as { job: { id: number } };
    const id = created.job.id;
    await expectError(await app.request(`/jobs/${id}/retry`, { method: "POST" }), 409, "CONFLICT");
    const cancel = await app.request(`/jobs/${id}/cancel`, json({ reason: "changed my mind" }));
    expect(cancel.status).toBe(200);
    expect(await cancel.json()).toMatchObject({ was: "pending", job: { id, status: "cancelled" } });
    await expectError(await app.request(`/jobs/${id}/cancel`, { method: "POST" }), 409, "CONFLICT");
    await expectError(
      await app.request(`/jobs/${id}/cancel`, json({ reason: 5 })),
      400,
      "VALIDATION_FAILED",
    );
    const retry = await app.request(`/jobs/${id}/retry`, { method: "POST" });
    expect(retry.status).toBe(200);
    expect(await retry.json()).toMatchObject({ job: { id, status: "pending", attempts: 0 } });
    await app.request(`/jobs/${id}/cancel`, { method: "POST" });

    const kinds: string[] = [];
    let cursor: number | null = null;
    let pages = 0;
    do {
      const page = (await (
        await app.request(`/jobs/${id}/events?limit=1${cursor ? `&cursor=${cursor}` : ""}`)
      ).json()) as { events: Array<{ kind: string }>; nextCursor: number | null };
      if (page.nextCursor !== null) expect(Number.isInteger(page.nextCursor)).toBe(true);
      // A page holds at most `limit` events, derived steps included.
      expect(page.events.length).toBeLessThanOrEqual(1);
      kinds.push(...page.events.map((e) => e.kind));
      cursor = page.nextCursor;
      pages++;
    } while (cursor && pages < 20);
    expect(pages).toBeGreaterThan(1);
    expect(kinds).toEqual(["enqueued", "cancelled", "retried", "cancelled"]);
    await expectError(await app.request(`/jobs/${id}/events?limit=abc`), 400, "VALIDATION_FAILED");
  });

  it("lists queues with counts, pause flag and workers; pauses and resumes", async () => {
    const paused = await app.request("/queues/mail/pause", { method: "POST" });
    expect(await paused.json()).toMatchObject({ name: "mail", paused: true });
    // A live worker (mail is paused: it claims nothing there).
    const worker = db.pgwake.worker({ queues: ["mail", "other"], concurrency: 1 });
    await worker.start();
    try {
      type Queues = {
        queues: Array<{
          name: string;
          paused: boolean;
          counts: Record<string, number>;
          workers: Array<{ id: string; lastSeenAt: string }>;
          oldestPendingAgeMs: number | null;
        }>;
      };
      const { queues } = await waitFor(
        async () => {
          const listed = (await (await app.request("/queues")).json()) as Queues;
          const mail = listed.queues.find((q) => q.name === "mail");
          return mail?.workers.some((w) => w.id === worker.id) ? listed : null;
        },
        { message: "the worker listed in /queues" },
      );
      const mail = queues.find((q) => q.name === "mail")!;
      expect(mail.paused).toBe(true);
      expect(mail.counts.pending).toBeGreaterThan(0);
      expect(mail.oldestPendingAgeMs).toBeGreaterThanOrEqual(0);
      expect(mail.workers.map((w) => w.id)).toEqual([worker.id]);
      // Like every other time of the API: ISO 8601 in UTC with milliseconds.
      const seenAt = mail.workers[0]!.lastSeenAt;
      expect(seenAt).toMatch(TIMESTAMP_PATTERN);
      expect(seenAt).toBe(new Date(seenAt).toISOString());
      expect(queues.find((q) => q.name === "other")).toMatchObject({
        paused: false,
        workers: [{ id: worker.id }],
        oldestPendingAgeMs: null,
      });
    } finally {
      await worker.stop({ graceMs: 1_000 });
    }
    const resumed = await app.request("/queues/mail/resume", { method: "POST" });
    expect(await resumed.json()).toMatchObject({ name: "mail", paused: false });
    await expectError(
      await app.request(`/queues/${encodeURIComponent("bad name!")}/pause`, { method: "POST" }),
      400,
      "VALIDATION_FAILED",
    );
  });

  it("requires a bearer key when keys are set: 401 missing/malformed, 403 wrong; /health, /ready and /metrics stay open", async () => {
    const secured = createApp({ pgwake: db.pgwake, apiKeys: ["key-one", "key-two"] });
    const before = await jobCount();
    const missing = await secured.request(
      "/jobs",
      json({ task: "send-email", payload: { to: "a@b.io" } }),
    );
    await expectError(missing, 401, "UNAUTHORIZED");
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer/);
    await expectError(
      await secured.request("/jobs/1", { headers: { authorization: "Basic abc" } }),
      401,
      "UNAUTHORIZED",
    );
    await expectError(
      await secured.request("/jobs/1", { headers: { authorization: "Bearer key-three" } }),
      403,
      "FORBIDDEN",
    );
    await expectError(
      await secured.request("/openapi.json", { headers: { authorization: "Bearer key-on" } }),
      403,
      "FORBIDDEN",
    );
    expect(await jobCount()).toBe(before);
    expect((await secured.request("/health")).status).toBe(200);
    expect((await secured.request("/metrics")).status).toBe(200);
    expect(
      (await secured.request("/queues", { headers: { authorization: "Bearer key-two" } })).status,
    ).toBe(200);
    // Health checks and load balancers carry no key.
    expect((await secured.request("/ready")).status).toBe(200);
    // Secure by default: a route added to the app some other way needs the key too, while a
    // request no route answers (404, 405) gets the same answer with or without one.
    const extended = createApp({ pgwake: db.pgwake, apiKeys: ["key-one"] });
    extended.get("/added-later", (c) => c.json({ secret: true }));
    await expectError(await extended.request("/added-later"), 401, "UNAUTHORIZED");
    expect(
      (await extended.request("/added-later", { headers: { authorization: "Bearer key-one" } }))
        .status,
    ).toBe(200);
    await expectError(await extended.request("/nowhere"), 404, "NOT_FOUND");
    await expectError(
      await extended.request("/health", { method: "DELETE" }),
      405,
      "METHOD_NOT_ALLOWED",
    );
    const closedMetrics = createApp({ pgwake: db.pgwake, apiKeys: ["k"], metricsPublic: false });
    await expectError(await closedMetrics.request("/metrics"), 401, "UNAUTHORIZED");
    expect(
      (await closedMetrics.request("/metrics", { headers: { authorization: "Bearer k" } })).status,
    ).toBe(200);
  });

  it("logs a warning when no keys are set, and never logs a key", async () => {
    const lines: string[] = [];
    const { pino } = await import("pino");
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    createApp({ pgwake: db.pgwake, logger });
    expect(lines.some((l) => l.includes('"level":40') && l.includes("open"))).toBe(true);
    const secured = createApp({ pgwake: db.pgwake, logger, apiKeys: ["super-secret-key"] });
    await secured.request("/queues", { headers: { authorization: "Bearer super-secret-key" } });
    await secured.request("/queues", { headers: { authorization: "Bearer wrong-secret-key" } });
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.join("\n")).not.toMatch(/secret-key/);
  });

  it("exposes Prometheus metrics from its own registry, process metrics under their standard names", async () => {
    const a = createApp({ pgwake: db.pgwake });
    const b = createApp({ pgwake: db.pgwake });
    await a.request("/jobs", json({ task: "send-email", payload: { to: "m@x.io" } }));
    const text = await (await a.request("/metrics")).text();
    expect(text).toMatch(/pgwake_jobs_enqueued_total\{queue="mail",task="send-email"\} 1/);
    expect(text).toMatch(/pgwake_http_request_duration_seconds_bucket\{[^}]*route="\/jobs"/);
    expect(text).toMatch(/pgwake_queue_depth\{queue="mail"\} \d+/);
    expect(text).toMatch(/pgwake_jobs\{queue="mail",status="pending"\} \d+/);
    expect(text).toMatch(/pgwake_metrics_database_up 1/);
    // What stock Node.js dashboards query.
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^process_resident_memory_bytes /m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(text).not.toMatch(/pgwake_api_/);
    // Finished-job counters are the workers' (they count where it happens), not read back here.
    expect(text).not.toMatch(/pgwake_jobs_(completed|failed|cancelled|retried)_total/);
    expect(text).not.toMatch(/pgwake_job_duration_seconds/);
    expect(await (await b.request("/metrics")).text()).not.toMatch(/pgwake_jobs_enqueued_total\{/);
  });

  it("refuses to pause or resume a queue nobody knows, unless asked to create it, so no phantom queue is left", async () => {
    const queueNames = async (target = app) =>
      (
        (await (await target.request("/queues")).json()) as { queues: Array<{ name: string }> }
      ).queues.map((q) => q.name);
    const typo = await expectError(
      await app.request("/queues/mial/pause", { method: "POST" }),
      404,
      "QUEUE_NOT_FOUND",
    );
    expect(typo.message).toMatch(/create=true/);
    await expectError(
      await app.request("/queues/mial/resume", { method: "POST" }),
      404,
      "QUEUE_NOT_FOUND",
    );
    expect(await queueNames()).not.toContain("mial");
    expect(await (await app.request("/metrics")).text()).not.toMatch(/queue="mial"/);
    // A task's queue and the default queue are known before their first job.
    expect((await app.request("/queues/default/pause", { method: "POST" })).status).toBe(200);
    expect((await app.request("/queues/default/resume", { method: "POST" })).status).toBe(200);
    // Pausing a queue before its first job is possible, when asked for.
    const created = await app.request("/queues/later/pause?create=true", { method: "POST" });
    expect(created.status).toBe(200);
    expect(await created.json()).toMatchObject({ name: "later", paused: true });
    expect(await queueNames()).toContain("later");
    expect((await app.request("/queues/later/resume", { method: "POST" })).status).toBe(200);
    await expectError(
      await app.request("/queues/x/pause?create=maybe", { method: "POST" }),
      400,
      "VALIDATION_FAILED",
    );
  });

  it("answers 503 NOT_READY before migration, with what to do, then serves once migrated", async () => {
    const schema = `t_api_unmigrated_${Date.now().toString(36)}`;
    const pgwake = new Pgwake({ pool: db.pool, schema, tasks: [sendEmail] });
    const fresh = createApp({ pgwake, acceptUnknownTasks: false });
    try {
      const ready = await expectError(await fresh.request("/ready"), 503, "NOT_READY");
      expect(ready.details).toMatchObject({ current: 0 });
      const submit = await fresh.request(
        "/jobs",
        json({ task: "send-email", payload: { to: "a@b.co" } }),
      );
      expect(submit.headers.get("retry-after")).toMatch(/^\d+$/);
      const refused = await expectError(submit, 503, "NOT_READY");
      expect(refused.message).toMatch(/pgwake migrate/);
      await expectError(await fresh.request("/jobs/1"), 503, "NOT_READY");
      await expectError(await fresh.request("/queues"), 503, "NOT_READY");
      // Bad input is still named as such: a 400 needs no database.
      await expectError(await fresh.request("/jobs", json({ task: "" })), 400, "VALIDATION_FAILED");

      await pgwake.migrate();
      expect((await fresh.request("/ready")).status).toBe(200);
      const ok = await fresh.request(
        "/jobs",
        json({ task: "send-email", payload: { to: "a@b.co" } }),
      );
      expect(ok.status).toBe(201);
    } finally {
      await db.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });
});
