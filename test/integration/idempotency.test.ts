import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.ts";
import type { EnqueuedJob } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

const RACERS = 50;

describe("idempotency keys", () => {
  let db: TestDb;
  let racers: pg.Pool;

  beforeAll(async () => {
    db = await createTestDb("idempotency");
    racers = new pg.Pool({ connectionString: db.url, max: RACERS });
  });
  afterAll(async () => {
    await racers?.end();
    await db?.close();
  });

  /** Connects every racer first, then fires all enqueues at once, each on its own connection. */
  const race = async <T>(run: (client: pg.PoolClient, i: number) => Promise<T>): Promise<T[]> => {
    const clients = await Promise.all(Array.from({ length: RACERS }, () => racers.connect()));
    try {
      expect(
        new Set(clients.map((c) => (c as unknown as { processID: number }).processID)).size,
      ).toBe(RACERS);
      return await Promise.all(clients.map((client, i) => run(client, i)));
    } finally {
      for (const c of clients) c.release();
    }
  };

  const jobsWithKey = (key: string) =>
    db.query<{ id: number }>("SELECT id FROM {{schema}}.jobs WHERE idempotency_key = $1", [key]);

  it(`${RACERS} concurrent enqueues with one key make one job`, { timeout: 60_000 }, async () => {
    for (let round = 0; round < 3; round++) {
      const key = `race-${round}`;
      const results = await race((client, i) =>
        db.pgwake.enqueue("send", { from: i }, { idempotencyKey: key, client }),
      );
      const rows = await jobsWithKey(key);
      expect(rows).toHaveLength(1);
      const id = rows[0]!.id;
      expect(results.map((r) => r.job.id)).toEqual(Array(RACERS).fill(id));
      expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
      // Every duplicate carries the original job, payload and all.
      const original = results.find((r) => !r.duplicate)!;
      for (const r of results) expect(r.job.payload).toEqual(original.job.payload);
    }
  });

  it("the same race through the SQL function", { timeout: 60_000 }, async () => {
    const results = await race(async (client, i) => {
      const { rows } = await client.query<{ id: number; duplicate: boolean }>(
        `SELECT (r.job).id, r.duplicate FROM "${db.schema}".enqueue('send', jsonb_build_object('from', $1::integer), idempotency_key => 'sql-race') r`,
        [i],
      );
      return rows[0]!;
    });
    const rows = await jobsWithKey("sql-race");
    expect(rows).toHaveLength(1);
    expect(results.map((r) => r.id)).toEqual(Array(RACERS).fill(rows[0]!.id));
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
  });

  it("a duplicate returns the original job, whatever it carries now", async () => {
    const first = await db.pgwake.enqueue(
      "send",
      { v: 1 },
      { idempotencyKey: "k1", maxAttempts: 3 },
    );
    const second = await db.pgwake.enqueue(
      "send",
      { v: 2 },
      { idempotencyKey: "k1", maxAttempts: 9 },
    );
    expect(first.duplicate).toBe(false);
    expect(second).toMatchObject({
      duplicate: true,
      job: { id: first.job.id, payload: { v: 1 }, maxAttempts: 3 },
    });
    // The key is unique per queue: another queue gets its own job.
    const other = await db.pgwake.enqueue(
      "send",
      { v: 3 },
      { idempotencyKey: "k1", queue: "other" },
    );
    expect(other.duplicate).toBe(false);
    expect(other.job.id).not.toBe(first.job.id);
  });

  it("enqueueMany handles duplicates inside one batch and against existing jobs", async () => {
    const existing = await db.pgwake.enqueue("send", { n: 0 }, { idempotencyKey: "old" });
    const results: EnqueuedJob[] = await db.pgwake.enqueueMany([
      { task: "send", payload: { n: 1 }, idempotencyKey: "a" },
      { task: "send", payload: { n: 2 }, idempotencyKey: "a" },
      { task: "send", payload: { n: 3 } },
      { task: "send", payload: { n: 4 }, idempotencyKey: "old" },
      { task: "send", payload: { n: 5 }, idempotencyKey: "b" },
      { task: "send", payload: { n: 6 }, idempotencyKey: "a" },
    ]);
    expect(results.map((r) => r.duplicate)).toEqual([false, true, false, true, false, true]);
    const [a1, a2, none, old, b, a3] = results.map((r) => r.job);
    expect(a2!.id).toBe(a1!.id);
    expect(a3!.id).toBe(a1!.id);
    expect(a2!.payload).toEqual({ n: 1 });
    expect(old!.id).toBe(existing.job.id);
    expect(new Set([a1!.id, none!.id, b!.id, existing.job.id]).size).toBe(4);
    expect(await jobsWithKey("a")).toHaveLength(1);
    const [{ n }] = (await db.query<{ n: number }>(
      "SELECT count(*)::integer AS n FROM {{schema}}.jobs WHERE payload->>'n' IN ('1','2','3','4','5','6')",
    )) as [{ n: number }];
    expect(n).toBe(3);
  });

  it("the SQL functions enqueue() and enqueue_many() give the library's semantics", async () => {
    const one = await db.query<{
      id: number;
      status: string;
      max_attempts: number;
      queue: string;
      duplicate: boolean;
    }>(
      `SELECT (r.job).id, (r.job).status, (r.job).max_attempts, (r.job).queue, r.duplicate
       FROM {{schema}}.enqueue('send', '{"to":"x"}', idempotency_key => 'psql') r`,
    );
    expect(one).toEqual([
      {
        id: expect.any(Number),
        status: "pending",
        max_attempts: 10,
        queue: "default",
        duplicate: false,
      },
    ]);
    const again = await db.query<{ id: number; duplicate: boolean }>(
      "SELECT (r.job).id, r.duplicate FROM {{schema}}.enqueue('send', '{}', idempotency_key => 'psql') r",
    );
    expect(again).toEqual([{ id: one[0]!.id, duplicate: true }]);
    // The library sees the SQL-made job as the original.
    const lib = await db.pgwake.enqueue("send", {}, { idempotencyKey: "psql" });
    expect(lib).toMatchObject({ duplicate: true, job: { id: one[0]!.id, payload: { to: "x" } } });

    const many = await db.query<{ ord: number; id: number; duplicate: boolean }>(
      `SELECT r.ord, (r.job).id, r.duplicate FROM {{schema}}.enqueue_many($1::jsonb) r ORDER BY r.ord`,
      [
        JSON.stringify([
          { task: "send", idempotency_key: "m" },
          { task: "send", idempotency_key: "m" },
          { task: "send", idempotency_key: "psql" },
        ]),
      ],
    );
    expect(many.map((r) => [r.ord, r.duplicate])).toEqual([
      [1, false],
      [2, true],
      [3, true],
    ]);
    expect(many[1]!.id).toBe(many[0]!.id);
    expect(many[2]!.id).toBe(one[0]!.id);
  });

  it("a retried job holds its active key again, and is not retried while another live job holds it", async () => {
    const submit = () =>
      db.pgwake.enqueue("send", { n: 1 }, { idempotencyKey: "retry-key", keyMode: "active" });
    const first = await submit();
    await db.pgwake.cancel([first.job.id]);
    // Revived, it holds the key again: a submission while it waits is its duplicate.
    expect(await db.pgwake.retry([first.job.id])).toMatchObject([{ id: first.job.id }]);
    expect(await submit()).toMatchObject({ duplicate: true, job: { id: first.job.id } });

    // Finished again, the key is free, and a new job takes it: the old one cannot come back.
    await db.pgwake.cancel([first.job.id]);
    const second = await submit();
    expect(second.duplicate).toBe(false);
    expect(await db.pgwake.retry([first.job.id])).toEqual([]);
    expect((await db.pgwake.getJob(first.job.id))?.status).toBe("cancelled");
    const app = createApp({ pgwake: db.pgwake });
    const res = await app.request(`/jobs/${first.job.id}/retry`, { method: "POST" });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({
      error: { code: "CONFLICT", details: { heldBy: second.job.id } },
    });
    await db.pgwake.cancel([second.job.id]);
  });

  it("the SQL enqueue() keeps the nulls inside a payload", async () => {
    const payload = { a: null, b: { c: null, d: [null, 1] } };
    const [row] = await db.query<{ payload: unknown }>(
      "SELECT (r.job).payload FROM {{schema}}.enqueue('send', $1::jsonb) r",
      [JSON.stringify(payload)],
    );
    expect(row!.payload).toEqual(payload);
  });
});
