import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

const ran: number[] = [];
const work = defineTask({
  name: "work",
  handler: (_payload, ctx) => {
    ran.push(ctx.job.id);
    return "done";
  },
});

/** The queue each wake-up names (a JSON payload `{"q": queue, "w": worker, …}`). */
const queuesOf = (payloads: string[]): string[] =>
  payloads.map((p) => (JSON.parse(p) as { q: string }).q);

describe("transactional enqueue", () => {
  let db: TestDb;
  let worker: Worker;
  let spy: pg.Client;
  /** Every notification on this schema's channel, in arrival (= commit) order. */
  const notifications: string[] = [];

  beforeAll(async () => {
    db = await createTestDb("transactional", { tasks: [work] });
    // Listens on the worker's channel too: it sees every wake-up the worker could get.
    spy = new pg.Client({ connectionString: db.url });
    await spy.connect();
    spy.on("notification", (n) => {
      if (n.channel === db.schema) notifications.push(n.payload ?? "");
    });
    await spy.query(`LISTEN "${db.schema}"`);
    worker = db.pgwake.worker({ pollIntervalMs: 60_000, maintenanceIntervalMs: 0 });
    await worker.start();
    await waitFor(() => worker.listening, { message: "listener" });
    await waitForWaiting();
  });
  /**
   * Until the worker has caught up and holds a wake-up token for the queue (after a claim that
   * found jobs, it first claims again after its cooldown).
   */
  const waitForWaiting = () =>
    waitFor(
      async () =>
        (
          await db.query(
            `SELECT 1 FROM {{schema}}.waiters WHERE worker_id = $1
             AND (queue = 'default' OR (queue = '*' AND NOT 'default' = ANY (coalesce(excluded, '{}'))))`,
            [worker.id],
          )
        ).length > 0,
      { message: "the worker to wait for wake-ups" },
    );
  afterAll(async () => {
    await worker?.stop({ graceMs: 1_000 });
    await spy?.end();
    await db?.close();
  });

  it("a rolled-back enqueue leaves no job and sends no wake-up", async () => {
    const client = await db.pool.connect();
    let id: number;
    try {
      await client.query("BEGIN");
      const { job } = await db.pgwake.enqueue("work", {}, { client });
      id = job.id;
      // Visible inside the transaction…
      expect(
        (await client.query("SELECT 1 FROM " + `"${db.schema}"` + ".jobs WHERE id = $1", [id]))
          .rowCount,
      ).toBe(1);
      // …and to nobody else.
      expect(await db.pgwake.getJob(id)).toBeNull();
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    expect(await db.pgwake.getJob(id)).toBeNull();

    // Notifications arrive in commit order: once the marker's wake-up (and its run) is seen,
    // a wake-up from the rolled-back transaction would have arrived before it.
    const before = notifications.length;
    const marker = await db.pgwake.enqueue("work", { marker: true });
    await waitFor(() => ran.includes(marker.job.id), {
      timeoutMs: 10_000,
      message: "the marker job",
    });
    await waitFor(() => notifications.length > before, { message: "the marker's wake-up" });
    expect(queuesOf(notifications.slice(before))).toEqual(["default"]);
    expect(ran).not.toContain(id);
    expect(ran).toEqual([marker.job.id]);
    const [{ n }] = (await db.query<{ n: number }>(
      "SELECT count(*)::integer AS n FROM {{schema}}.all_jobs",
    )) as [{ n: number }];
    expect(n).toBe(1);
  });

  it("a committed enqueue runs, and only after the commit", async () => {
    await waitForWaiting();
    const client = await db.pool.connect();
    let id: number;
    const notifiedBefore = notifications.length;
    try {
      await client.query("BEGIN");
      const { job } = await db.pgwake.enqueue("work", {}, { client });
      id = job.id;
      // A committed job inserted after ours wakes the worker, which claims: ours, not yet
      // committed, is invisible to that claim, and only the marker's wake-up went out.
      const marker = await db.pgwake.enqueue("work", { marker: 2 });
      await waitFor(() => ran.includes(marker.job.id), { timeoutMs: 10_000, message: "marker" });
      await waitFor(() => notifications.length > notifiedBefore, { message: "marker wake-up" });
      expect(ran).not.toContain(id);
      expect(queuesOf(notifications.slice(notifiedBefore))).toEqual(["default"]);
      expect(await db.pgwake.getJob(id)).toBeNull();
      await client.query("COMMIT");
    } finally {
      client.release();
    }
    const done = await waitFor(
      async () => {
        const j = await db.pgwake.getJob(id);
        return j?.status === "completed" ? j : null;
      },
      { timeoutMs: 10_000, message: "the committed job to run" },
    );
    expect(done.result).toBe("done");
    expect(ran.filter((x) => x === id)).toHaveLength(1);
  });
  it("a transaction left open after enqueueing stalls neither submitters nor workers", {
    timeout: 60_000,
  }, async () => {
    const client = await db.pool.connect();
    const fresh = db.pgwake.worker({ pollIntervalMs: 60_000, maintenanceIntervalMs: 0 });
    try {
      await client.query("BEGIN");
      const { job: open } = await db.pgwake.enqueue("work", { open: true }, { client });
      // A worker that starts now registers for wake-ups while that transaction is open.
      await fresh.start();
      await waitFor(() => fresh.listening, { message: "the new worker's listener" });
      await waitFor(
        async () =>
          (await db.query("SELECT 1 FROM {{schema}}.waiters WHERE worker_id = $1", [fresh.id]))
            .length > 0,
        { message: "the new worker's registration" },
      );
      const before = performance.now();
      // Bounded waits, so a stall fails the test instead of hanging it (finally commits).
      let enqueued: number | undefined;
      const submitted = db.pgwake.enqueue("work", { committed: true }).then(({ job }) => {
        enqueued = job.id;
      });
      const id = await waitFor(() => enqueued, {
        timeoutMs: 10_000,
        message: "a submission to commit while another transaction is open",
      });
      await submitted;
      await waitFor(() => ran.includes(id), {
        timeoutMs: 10_000,
        message: "a committed job to run while another transaction is open",
      });
      console.log(
        `committed job ran ${(performance.now() - before).toFixed(1)} ms after submission, beside an open transaction`,
      );
      expect(ran).not.toContain(open.id);
    } finally {
      await client.query("COMMIT").catch(() => {});
      client.release();
      await fresh.stop({ graceMs: 1_000 });
    }
  });
});
