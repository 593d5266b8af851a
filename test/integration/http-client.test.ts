import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.ts";
import { type ApiServer, serveApi } from "../../src/api/server.ts";
import { BUILTIN_TASKS } from "../../src/builtin/index.ts";
import { FINISHED_STATUSES, PgwakeApiError, PgwakeClient } from "../../src/http-client/index.ts";
import type { Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// The typed HTTP client in a real flow: a real API server on a real socket, a real worker
// running the built-in demo tasks, a real Postgres schema.

const KEY = "client-test-key";

/** The built-in demo tasks, typed for the client. */
interface DemoTasks {
  "demo.echo": unknown;
  "demo.sleep": { ms: number };
  "demo.fail": { failTimes?: number; message?: string };
}

async function rejection(promise: Promise<unknown>): Promise<PgwakeApiError> {
  const error = await promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PgwakeApiError);
  return error as PgwakeApiError;
}

describe("the typed HTTP client against a real server and worker", () => {
  let db: TestDb;
  let server: ApiServer;
  let worker: Worker;
  let client: PgwakeClient<DemoTasks>;

  beforeAll(async () => {
    db = await createTestDb("http_client", { tasks: BUILTIN_TASKS });
    server = await serveApi(
      createApp({ pgwake: db.pgwake, apiKeys: [KEY], acceptUnknownTasks: false }),
      { port: 0 },
    );
    worker = db.pgwake.worker({ concurrency: 4, pollIntervalMs: 200 });
    await worker.start();
    client = new PgwakeClient<DemoTasks>({ baseUrl: server.url, apiKey: KEY });
  });
  afterAll(async () => {
    await worker?.stop({ graceMs: 1_000 });
    await server?.close();
    await db?.close();
  });

  it("submits, waits until completed, and reads the timeline", async () => {
    expect(await client.ready()).toMatchObject({ status: "ready" });
    await client.health();
    const { job, duplicate } = await client.submit(
      { task: "demo.echo", payload: { hello: "world" } },
      { requestId: "client-flow-1" },
    );
    expect(duplicate).toBe(false);
    expect(job).toMatchObject({ task: "demo.echo", status: "pending", requestId: "client-flow-1" });
    const done = await client.waitUntilFinished(job.id, { timeoutMs: 30_000 });
    expect(done).toMatchObject({ id: job.id, status: "completed", result: { hello: "world" } });
    expect(done.finishedAt).toBe(new Date(done.finishedAt!).toISOString());

    const page = await client.events(job.id);
    expect(page.events.map((e) => e.kind)).toEqual(["enqueued", "claimed", "completed"]);
    expect(page.nextCursor).toBeNull();
    const all = [];
    for await (const event of client.allEvents(job.id, { pageSize: 1 })) all.push(event.kind);
    expect(all).toEqual(["enqueued", "claimed", "completed"]);
  });

  it("keeps an idempotency key, submits batches, and pages through jobs with cursors", async () => {
    const first = await client.submit(
      { task: "demo.echo", payload: { n: 1 } },
      { idempotencyKey: "client-once" },
    );
    const again = await client.submit(
      { task: "demo.echo", payload: { n: 2 } },
      { idempotencyKey: "client-once" },
    );
    expect(again).toMatchObject({ duplicate: true, job: { id: first.job.id } });

    const batch = await client.submitBatch([
      { task: "demo.echo", payload: { n: 3 }, queue: "client-list" },
      { task: "demo.echo", payload: { n: 4 }, queue: "client-list" },
      { task: "demo.echo", payload: { n: 5 }, queue: "client-list" },
    ]);
    expect([batch.created, batch.duplicates]).toEqual([3, 0]);
    const ids = batch.items.map((i) => i.job.id);

    const page = await client.listJobs({ queue: "client-list", limit: 2 });
    expect(page.jobs.map((j) => j.id)).toEqual([ids[2], ids[1]]);
    expect(page.nextCursor).toBe(ids[1]);
    const seen: number[] = [];
    for await (const job of client.jobs({ queue: "client-list", limit: 1 })) seen.push(job.id);
    expect(seen).toEqual([...ids].reverse());
    // The worker serves this queue: each job is pending, running or completed by now (a filter
    // without `running` failed a CI run that caught all three mid-run).
    const filtered = await client.listJobs({
      queue: "client-list",
      status: ["pending", "running", "completed"],
    });
    expect(filtered.jobs).toHaveLength(3);
  });

  it("cancels a running job (its handler stops) and retries it, and retries a failed one", async () => {
    const { job } = await client.submit({ task: "demo.sleep", payload: { ms: 600_000 } });
    await waitFor(async () => (await client.getJob(job.id)).status === "running", {
      message: "sleep job running",
    });
    const cancelled = await client.cancel(job.id, "no longer needed");
    expect(cancelled).toMatchObject({ was: "running", job: { status: "cancelled" } });
    expect((await client.waitUntilFinished(job.id)).status).toBe("cancelled");
    const timeline = (await client.events(job.id)).events;
    expect(timeline.at(-1)).toMatchObject({
      kind: "cancelled",
      data: { reason: "no longer needed" },
    });
    expect((await rejection(client.cancel(job.id))).code).toBe("CONFLICT");

    // A cancelled job comes back with a fresh attempt budget and runs.
    const delayed = await client.submit({
      task: "demo.echo",
      payload: "again",
      delayMs: 3_600_000,
    });
    await client.cancel(delayed.job.id);
    const retried = await client.retry(delayed.job.id);
    expect(retried.job).toMatchObject({ status: "pending", attempts: 0 });
    expect(await client.waitUntilFinished(delayed.job.id, { timeoutMs: 30_000 })).toMatchObject({
      status: "completed",
      result: "again",
    });

    // demo.fail without failTimes fails each of its 3 attempts, then for good.
    const failing = await client.submit({ task: "demo.fail", payload: { message: "on purpose" } });
    const failed = await client.waitUntilFinished(failing.job.id, { timeoutMs: 60_000 });
    expect(failed).toMatchObject({
      status: "failed",
      attempts: 3,
      lastError: { message: "on purpose" },
    });
    expect((await client.retry(failing.job.id)).job).toMatchObject({ attempts: 0 });
    expect((await rejection(client.retry(delayed.job.id))).code).toBe("CONFLICT");
    await client.cancel(failing.job.id).catch(() => {});
  });

  it("lists queues with their workers, and pauses and resumes them", async () => {
    const queues = await client.queues();
    const defaultQueue = queues.find((q) => q.name === "default")!;
    expect(defaultQueue.workers.map((w) => w.id)).toContain(worker.id);
    for (const w of defaultQueue.workers)
      expect(w.lastSeenAt).toBe(new Date(w.lastSeenAt).toISOString());
    expect(await client.pauseQueue("default")).toMatchObject({ name: "default", paused: true });
    expect((await client.queues()).find((q) => q.name === "default")?.paused).toBe(true);
    expect(await client.resumeQueue("default")).toMatchObject({ paused: false });
    expect((await rejection(client.pauseQueue("defualt"))).code).toBe("QUEUE_NOT_FOUND");
    expect(await client.pauseQueue("client-later", { create: true })).toMatchObject({
      paused: true,
    });
    await client.resumeQueue("client-later");
  });

  it("throws typed errors carrying the API's code, status, details and request id", async () => {
    const missing = await rejection(client.getJob(987_654_321));
    expect(missing).toMatchObject({
      status: 404,
      code: "JOB_NOT_FOUND",
      message: "no job 987654321",
    });
    expect(missing.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const untyped = new PgwakeClient({ baseUrl: server.url, apiKey: KEY });
    const unknown = await rejection(untyped.submit({ task: "demo.ecko" }));
    expect(unknown).toMatchObject({ status: 422, code: "UNKNOWN_TASK" });
    expect(unknown.details).toMatchObject({ knownTasks: expect.arrayContaining(["demo.echo"]) });
    const invalid = await rejection(client.submit({ task: "demo.sleep", payload: { ms: -1 } }));
    expect(invalid).toMatchObject({ status: 422, code: "INVALID_PAYLOAD" });
    const badKey = new PgwakeClient({ baseUrl: server.url, apiKey: "wrong" });
    expect(await rejection(badKey.queues())).toMatchObject({ status: 403, code: "FORBIDDEN" });
    const noKey = new PgwakeClient({ baseUrl: server.url });
    expect(await rejection(noKey.queues())).toMatchObject({ status: 401, code: "UNAUTHORIZED" });
    const nowhere = new PgwakeClient({ baseUrl: "http://127.0.0.1:1", apiKey: KEY });
    const network = await rejection(nowhere.getJob(1));
    expect(network).toMatchObject({ status: 0, code: "NETWORK_ERROR", transient: true });
  });

  it("waits through a server that cannot answer for a while, gives up at its timeout, and stops on abort", async () => {
    let failures = 0;
    const flaky = new PgwakeClient<DemoTasks>({
      baseUrl: server.url,
      apiKey: KEY,
      fetch: async (input, init) => {
        if ((init?.method ?? "GET") === "GET" && failures < 3) {
          failures++;
          throw new TypeError("fetch failed");
        }
        return fetch(input, init);
      },
    });
    const { job } = await flaky.submit({ task: "demo.echo", payload: 1 });
    const done = await flaky.waitUntilFinished(job.id, { initialDelayMs: 10, timeoutMs: 30_000 });
    expect(done.status).toBe("completed");
    expect(failures).toBe(3);

    const later = await client.submit({ task: "demo.echo", payload: 2, delayMs: 3_600_000 });
    const timeout = await rejection(
      client.waitUntilFinished(later.job.id, { timeoutMs: 200, initialDelayMs: 20 }),
    );
    expect(timeout).toMatchObject({ code: "TIMEOUT", details: { job: { id: later.job.id } } });
    const lastSeen = (timeout.details as { job: { status: string } }).job;
    expect(FINISHED_STATUSES.has(lastSeen.status as "completed")).toBe(false);

    const controller = new AbortController();
    const waiting = client.waitUntilFinished(later.job.id, { signal: controller.signal });
    controller.abort(new Error("caller gave up"));
    await expect(waiting).rejects.toThrow("caller gave up");
    await client.cancel(later.job.id);
  });
});

// Compile-time checks, made by tsc (`npx tsc --noEmit`): the task map types submissions. Never
// called; a line that stops being an error fails the type check ("unused @ts-expect-error").
function _typedSubmissions(client: PgwakeClient<DemoTasks>): void {
  void client.submit({ task: "demo.sleep", payload: { ms: 5 } });
  // @ts-expect-error: not a task of the map
  void client.submit({ task: "demo.slep", payload: { ms: 5 } });
  // @ts-expect-error: the payload of demo.sleep is { ms: number }
  void client.submit({ task: "demo.sleep", payload: { ms: "5" } });
  // @ts-expect-error: ids are numbers, not strings
  void client.getJob("1");
  // @ts-expect-error: statuses are the API's
  void client.listJobs({ status: ["done"] });
}
