import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.ts";
import { SchemaSql } from "../../src/db/sql.ts";
import { bulkJobs } from "../../src/jobs/bulk.ts";
import { engineFor } from "../fixtures/engine.ts";
import { jobsOf, makeCompletedJobs, makeFailedJobs } from "../fixtures/ui/jobs.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

// Bulk retry, cancel and delete over a real schema: what each touches and what it leaves, the
// bounded batches, repeats that find nothing more to do, idempotency keys and flow-control keys
// kept consistent, and the HTTP routes' answers and refusals.

const KEY = "bulk-key";

/** A bulk answer, or an error answer (the fields of the other are then absent). */
interface Answer {
  action: string;
  dryRun: boolean;
  affected: number;
  skipped: number;
  capped: boolean;
  batches: number;
  error: { code: string; details: unknown };
}

describe("bulk actions", () => {
  let db: TestDb;
  let sql: SchemaSql;
  let app: ReturnType<typeof createApp>;

  const post = async (path: string, body: unknown, key = KEY) => {
    const res = await app.request(path, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Answer };
  };
  const statusOf = async (ids: number[]) =>
    db.query<{ status: string; n: number }>(
      "SELECT status, count(*)::integer AS n FROM {{schema}}.all_jobs WHERE id = ANY ($1) GROUP BY status ORDER BY status",
      [ids],
    );

  beforeAll(async () => {
    db = await createTestDb("bulk_actions");
    sql = new SchemaSql(db.schema);
    app = createApp({ pgwake: db.pgwake, apiKeys: [KEY] });
  });
  afterAll(async () => {
    await db?.close();
  });

  it("retries the 1,000 failed jobs of one queue in bounded batches, and a repeat does nothing more", async () => {
    const target = await makeFailedJobs(db, "mail", jobsOf("mail.send", 1_000));
    const otherTask = await makeFailedJobs(db, "mail", jobsOf("mail.digest", 20));
    const otherQueue = await makeFailedJobs(db, "reports", jobsOf("mail.send", 30));
    const completed = await makeCompletedJobs(db, "mail", jobsOf("mail.send", 40));
    const looked = new Date();

    const preview = await post("/jobs/bulk/retry", {
      queue: "mail",
      task: "mail.send",
      dryRun: true,
    });
    expect(preview).toMatchObject({
      status: 200,
      body: { action: "retry", dryRun: true, affected: 1_000, capped: false },
    });
    expect(await statusOf(target)).toEqual([{ status: "failed", n: 1_000 }]);

    const done = await post("/jobs/bulk/retry", {
      queue: "mail",
      task: "mail.send",
      status: ["failed"],
      finishedBefore: looked.toISOString(),
    });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({
      action: "retry",
      dryRun: false,
      affected: 1_000,
      skipped: 0,
    });
    // 1,020 dead letters of the queue in windows of 500: three statements, none unbounded.
    expect(done.body.batches).toBe(3);
    expect(await statusOf(target)).toEqual([{ status: "pending", n: 1_000 }]);
    const [revived] = await db.query<{ attempts: number; n: number; keyed: number }>(
      `SELECT max(attempts) AS attempts, count(*)::integer AS n,
              count(*) FILTER (WHERE held_slot)::integer AS keyed
       FROM {{schema}}.jobs WHERE id = ANY ($1)`,
      [target],
    );
    expect(revived).toEqual({ attempts: 0, n: 1_000, keyed: 0 });
    expect(await statusOf(otherTask)).toEqual([{ status: "failed", n: 20 }]);
    expect(await statusOf(otherQueue)).toEqual([{ status: "failed", n: 30 }]);
    expect(await statusOf(completed)).toEqual([{ status: "completed", n: 40 }]);
    const events = await engineFor(db).events(target[0]!);
    expect(events.at(-1)).toMatchObject({ kind: "retried", data: { bulk: true } });
    // The revived jobs run like any other.
    expect(
      await engineFor(db).claim("after-retry", { queue: "mail", tasks: ["mail.send"], limit: 5 }),
    ).toHaveLength(5);

    const repeat = await post("/jobs/bulk/retry", {
      queue: "mail",
      task: "mail.send",
      status: ["failed"],
      finishedBefore: looked.toISOString(),
    });
    expect(repeat.body).toMatchObject({ affected: 0, skipped: 0 });
  });

  it("leaves alone jobs that failed again after the time the client looked (finishedBefore)", async () => {
    const [first] = await makeFailedJobs(db, "again", jobsOf("again.task", 1));
    const looked = new Date();
    const body = { queue: "again", finishedBefore: looked.toISOString() };
    expect((await post("/jobs/bulk/retry", body)).body.affected).toBe(1);
    // It runs and fails again: a new failure, after the time of the request.
    const engine = engineFor(db);
    const [claimed] = await engine.claim("again-worker", { queue: "again", tasks: ["again.task"] });
    expect(claimed!.id).toBe(first);
    const { failJobs } = await import("../../src/jobs/fail.ts");
    await failJobs(db.pool, sql, "again-worker", [
      {
        id: first!,
        attempt: 1,
        error: { name: "Error", message: "again" },
        delayMs: 0,
        permanent: true,
      },
    ]);
    expect((await post("/jobs/bulk/retry", body)).body.affected).toBe(0);
    // Without the bound, the new failure matches.
    expect((await post("/jobs/bulk/retry", { queue: "again" })).body.affected).toBe(1);
  });

  it("keeps idempotency keys consistent: a released key is reserved again, a key a live job took is skipped", async () => {
    // 'active' keys are released when the job finishes; 'retain' ones stay reserved for it.
    const [active] = await makeFailedJobs(db, "keys", [
      { task: "k.task", idempotencyKey: "k-active", keyMode: "active" },
    ]);
    const [retained] = await makeFailedJobs(db, "keys", [
      { task: "k.task", idempotencyKey: "k-retained" },
    ]);
    const [taken] = await makeFailedJobs(db, "keys", [
      { task: "k.task", idempotencyKey: "k-taken", keyMode: "active" },
    ]);
    const newer = await db.pgwake.enqueue("k.task", {}, {
      queue: "keys",
      idempotencyKey: "k-taken",
      keyMode: "active",
      delayMs: 3_600_000,
    } as never);
    expect(newer.duplicate).toBe(false);

    const result = await bulkJobs(db.pool, sql, "retry", { queue: "keys", statuses: ["failed"] });
    expect(result).toMatchObject({ affected: 2, skipped: 1 });
    const keys = await db.query<{ key: string; job_id: number; mode: string | null }>(
      "SELECT key, job_id::integer, mode FROM {{schema}}.job_keys WHERE queue = 'keys' ORDER BY key",
    );
    expect(keys).toEqual([
      { key: "k-active", job_id: active, mode: "active" },
      { key: "k-retained", job_id: retained, mode: null },
      { key: "k-taken", job_id: newer.job.id, mode: "active" },
    ]);
    expect(await statusOf([taken!])).toEqual([{ status: "failed", n: 1 }]);
    // A submission of the re-reserved key is a duplicate of the retried job, not a second one.
    const again = await db.pgwake.enqueue("k.task", {}, {
      queue: "keys",
      idempotencyKey: "k-active",
      keyMode: "active",
    } as never);
    expect(again).toMatchObject({ duplicate: true, job: { id: active, status: "pending" } });
    // The skipped job stays skipped while the newer one lives: a repeat changes nothing.
    expect(
      await bulkJobs(db.pool, sql, "retry", { queue: "keys", statuses: ["failed"] }),
    ).toMatchObject({ affected: 0, skipped: 1 });
  });

  it("gives a retried job of a queue now served per key the key '' and its key row", async () => {
    const [job] = await makeFailedJobs(db, "keyed", jobsOf("keyed.task", 1));
    await db.pgwake.setQueueLimits("keyed", { keyConcurrency: 1 });
    await db.query("DELETE FROM {{schema}}.queue_keys WHERE queue = 'keyed'");
    expect((await post("/jobs/bulk/retry", { queue: "keyed" })).body.affected).toBe(1);
    const [row] = await db.query<{ concurrency_key: string | null; held_slot: boolean }>(
      "SELECT concurrency_key, held_slot FROM {{schema}}.jobs WHERE id = $1",
      [job],
    );
    expect(row).toEqual({ concurrency_key: "", held_slot: false });
    const [key] = await db.query("SELECT running FROM {{schema}}.queue_keys WHERE queue = 'keyed'");
    expect(key).toEqual({ running: 0 });
  });

  it("retries across every queue when none is named, walking the dead letters queue by queue", async () => {
    const a = await makeFailedJobs(db, "walk-a", jobsOf("walk.task", 7));
    const b = await makeFailedJobs(db, "walk-b", jobsOf("walk.task", 5));
    const result = await bulkJobs(
      db.pool,
      sql,
      "retry",
      { task: "walk.task", statuses: ["failed"] },
      { batchSize: 3 },
    );
    expect(result.affected).toBe(12);
    expect(result.batches).toBeGreaterThan(4);
    expect(await statusOf([...a, ...b])).toEqual([{ status: "pending", n: 12 }]);
  });

  it("cancels live jobs matching a filter, checks them again under lock, and a repeat does nothing more", async () => {
    const waiting = await db.pgwake.enqueueMany(
      jobsOf("c.task", 30, { queue: "cancel-me", delayMs: 3_600_000 }),
    );
    const other = await db.pgwake.enqueueMany(jobsOf("c.other", 5, { queue: "cancel-me" }));
    const [running] = await engineFor(db).claim("cancel-worker", {
      queue: "cancel-me",
      tasks: ["c.other"],
      limit: 1,
    });
    const preview = await post("/jobs/bulk/cancel", {
      queue: "cancel-me",
      task: "c.task",
      dryRun: true,
    });
    expect(preview.body).toMatchObject({ affected: 30, dryRun: true });
    const done = await post("/jobs/bulk/cancel", {
      queue: "cancel-me",
      task: "c.task",
      status: ["scheduled"],
    });
    expect(done.body).toMatchObject({ action: "cancel", affected: 30 });
    expect(await statusOf(waiting.map((w) => w.job.id))).toEqual([{ status: "cancelled", n: 30 }]);
    expect(await statusOf(other.map((o) => o.job.id))).toEqual([
      { status: "pending", n: 4 },
      { status: "running", n: 1 },
    ]);
    expect(
      (await post("/jobs/bulk/cancel", { queue: "cancel-me", task: "c.task" })).body,
    ).toMatchObject({ affected: 0 });
    // A running job is cancelled too when its status is named, with the event cancel writes.
    const all = await post("/jobs/bulk/cancel", { queue: "cancel-me", status: ["running"] });
    expect(all.body.affected).toBe(1);
    expect(await engineFor(db).events(running!.id)).toEqual([
      expect.objectContaining({ kind: "cancelled", message: "cancelled while running" }),
    ]);
  });

  it("deletes finished jobs with their events and keys, never live ones", async () => {
    const failed = await makeFailedJobs(db, "purge", [
      ...jobsOf("p.task", 10),
      { task: "p.task", idempotencyKey: "p-key" },
    ]);
    const completed = await makeCompletedJobs(db, "purge", jobsOf("p.task", 12));
    const live = await db.pgwake.enqueueMany(jobsOf("p.task", 3, { queue: "purge" }));
    const done = await post("/jobs/bulk/purge", { queue: "purge", status: ["failed"] });
    expect(done.body).toMatchObject({ action: "delete", affected: 11 });
    expect(await statusOf(failed)).toEqual([]);
    expect(
      await db.query("SELECT 1 FROM {{schema}}.job_events WHERE job_id = ANY ($1)", [failed]),
    ).toEqual([]);
    // The key is free again: a submission makes a new job, not a duplicate of a deleted one.
    const resubmitted = await db.pgwake.enqueue("p.task", {}, {
      queue: "purge",
      idempotencyKey: "p-key",
    } as never);
    expect(resubmitted.duplicate).toBe(false);
    // Completed jobs are found by walking history, in batches.
    const purged = await bulkJobs(
      db.pool,
      sql,
      "delete",
      { queue: "purge", statuses: ["completed"] },
      { batchSize: 100 },
    );
    expect(purged.affected).toBe(12);
    expect(await statusOf(completed)).toEqual([]);
    expect(await statusOf(live.map((l) => l.job.id))).toEqual([{ status: "pending", n: 3 }]);
    expect(
      (await post("/jobs/bulk/purge", { queue: "purge", status: ["failed", "completed"] })).body,
    ).toMatchObject({ affected: 0 });
  });

  it("counts at most 10,000 in a dry run and says so", async () => {
    const result = await bulkJobs(
      db.pool,
      sql,
      "retry",
      { queue: "mail", statuses: ["failed"] },
      { dryRun: true, countCap: 10 },
    );
    expect(result).toMatchObject({ affected: 10, capped: true });
  });

  it("refuses what it cannot do with a 400 that names the field, and changes nothing", async () => {
    const cases: Array<[string, unknown, string]> = [
      ["/jobs/bulk/retry", { status: ["pending"] }, "status.0"],
      ["/jobs/bulk/cancel", { status: ["failed"] }, "status.0"],
      ["/jobs/bulk/cancel", { finishedBefore: "2025-01-01T00:00:00Z" }, ""],
      ["/jobs/bulk/purge", { queue: "purge" }, "status"],
      ["/jobs/bulk/purge", { status: ["running"] }, "status.0"],
      [
        "/jobs/bulk/retry",
        { createdAfter: "2025-01-02T00:00:00Z", createdBefore: "2025-01-01T00:00:00Z" },
        "createdBefore",
      ],
      ["/jobs/bulk/retry", { queue: "bad name" }, "queue"],
      ["/jobs/bulk/retry", { createdAfter: "yesterday" }, "createdAfter"],
    ];
    for (const [path, body, field] of cases) {
      const res = await post(path, body);
      expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      expect(res.body.error.code).toBe("VALIDATION_FAILED");
      expect(JSON.stringify(res.body.error.details)).toContain(`"path":"${field}`);
    }
    const [before] = await db.query("SELECT count(*)::integer AS n FROM {{schema}}.job_history");
    expect((await post("/jobs/bulk/retry", {}, "wrong")).status).toBe(403);
    const [after] = await db.query("SELECT count(*)::integer AS n FROM {{schema}}.job_history");
    expect(after).toEqual(before);
  });
});
