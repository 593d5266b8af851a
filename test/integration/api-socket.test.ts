import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.ts";
import { type ApiServer, serveApi } from "../../src/api/server.ts";
import { defineTask, Pgwake, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { deferred, waitFor } from "../helpers/wait.ts";

/** Writes bytes on a fresh TCP connection and reads everything until the server closes it. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" });
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
    // Written without closing our side: the server is the one to close.
    socket.on("connect", () => socket.write(bytes));
  });
}

interface SubmitAnswer {
  job: { id: number; status: string };
  duplicate: boolean;
}

describe("HTTP API over a real socket", () => {
  let db: TestDb;
  let server: ApiServer;
  let worker: Worker;
  const started = deferred<number>();
  let abortReason: unknown;
  const handlerEnded = deferred();

  const waitForAbort = defineTask({
    name: "wait-for-abort",
    handler: (_payload, ctx) =>
      new Promise((_resolve, reject) => {
        started.resolve(ctx.job.id);
        ctx.signal.addEventListener("abort", () => {
          abortReason = ctx.signal.reason ?? "aborted";
          handlerEnded.resolve();
          reject(new Error("stopped by the abort signal"));
        });
      }),
  });
  const quick = defineTask({
    name: "quick",
    handler: (payload: { n?: number }) => ({ n: payload?.n ?? 0 }),
  });

  beforeAll(async () => {
    db = await createTestDb("api_socket", { tasks: [waitForAbort, quick] });
    server = await serveApi(createApp({ pgwake: db.pgwake }), { port: 0 });
    worker = db.pgwake.worker({
      queues: ["default", "paused-q", "open-q"],
      concurrency: 4,
      pollIntervalMs: 200,
    });
    await worker.start();
    await waitFor(() => worker.listening, { message: "worker listening" });
  });
  afterAll(async () => {
    await worker?.stop({ graceMs: 1_000 });
    await server?.close();
    await db.close();
  });

  const post = (path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const getJob = async (id: number) =>
    (await (await fetch(`${server.url}/jobs/${id}`)).json()) as { status: string; result: unknown };

  it("serves health, and echoes the request id over HTTP", async () => {
    const res = await fetch(`${server.url}/health`, { headers: { "x-request-id": "abc-123" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBe("abc-123");
    const generated = await fetch(`${server.url}/health`, {
      headers: { "x-request-id": "bad id with spaces" },
    });
    expect(generated.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("makes one job of 100 concurrent submissions with the same idempotency key", async () => {
    const answers = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        post(
          "/jobs",
          { task: "quick", queue: "open-q", payload: { n: i } },
          { "Idempotency-Key": "same-key" },
        ).then(async (res) => ({
          status: res.status,
          body: (await res.json()) as SubmitAnswer,
        })),
      ),
    );
    expect(answers.filter((a) => a.status === 201)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 200)).toHaveLength(99);
    const ids = new Set(answers.map((a) => a.body.job.id));
    expect(ids.size).toBe(1);
    expect(answers.filter((a) => a.body.duplicate)).toHaveLength(99);
    const listed = (await (await fetch(`${server.url}/jobs?queue=open-q&limit=500`)).json()) as {
      jobs: Array<{ id: number; idempotencyKey: string | null }>;
    };
    expect(listed.jobs.filter((j) => j.idempotencyKey === "same-key").map((j) => j.id)).toEqual([
      ...ids,
    ]);
  });

  it("refuses a chunked body over the limit while it streams, and keeps serving", async () => {
    const small = await serveApi(createApp({ pgwake: db.pgwake, bodyLimitBytes: 1024 }), {
      port: 0,
    });
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>(
        (resolve, reject) => {
          const req = httpRequest(
            `${small.url}/jobs`,
            {
              method: "POST",
              headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
            },
            (res) => {
              let text = "";
              res.on("data", (chunk) => {
                text += chunk;
              });
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
            },
          );
          req.on("error", reject);
          // 64 KiB in chunks: far past the limit; the server answers before it has read it all.
          const chunk = " ".repeat(4096);
          let sent = 0;
          const pump = () => {
            while (sent < 16) {
              sent++;
              if (!req.write(chunk)) return void req.once("drain", pump);
            }
            req.end();
          };
          pump();
        },
      );
      expect(status).toBe(413);
      expect(JSON.parse(body)).toMatchObject({ error: { code: "PAYLOAD_TOO_LARGE" } });
      expect((await fetch(`${small.url}/health`)).status).toBe(200);
    } finally {
      await small.close();
    }
  });

  it("writes the 201 of a job it created before answering bad bytes that follow on the connection", async () => {
    // Issue 10, bug 10: Node's default clientError handler wrote a bare 400 and closed the socket
    // before the 201 owed for the job, yet the job existed; a client retrying made a duplicate.
    for (let round = 0; round < 5; round++) {
      const marker = `pipelined-${round}-${Date.now()}`;
      const body = JSON.stringify({
        task: "quick",
        queue: "open-q",
        payload: { n: round },
        idempotencyKey: marker,
      });
      const raw = await rawExchange(
        server.port,
        `POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}` +
          "\u0000\u0001 this is not HTTP\r\n\r\n",
      );
      const created = await db.pgwake.listJobs({ queue: "open-q", limit: 500 });
      const job = created.jobs.find((j) => j.idempotencyKey === marker);
      // Either the job exists and its 201 was written first, or there is no job.
      if (job) {
        expect(raw, `round ${round}: the 201 precedes anything else`).toMatch(/^HTTP\/1\.1 201 /);
        expect(raw).toContain(`"id":${job.id}`);
      } else {
        expect(raw).not.toMatch(/HTTP\/1\.1 201 /);
      }
    }
  });

  it("cancels a running job: its abort signal fires and it ends cancelled", async () => {
    const res = await post("/jobs", { task: "wait-for-abort" });
    expect(res.status).toBe(201);
    const { job } = (await res.json()) as SubmitAnswer;
    expect(await started.promise).toBe(job.id);
    await waitFor(async () => (await getJob(job.id)).status === "running", {
      message: "job running",
    });
    const cancel = await post(`/jobs/${job.id}/cancel`, { reason: "test" });
    expect(cancel.status).toBe(200);
    expect(await cancel.json()).toMatchObject({ was: "running", job: { status: "cancelled" } });
    await handlerEnded.promise;
    expect(abortReason).toMatchObject({ code: "CANCELLED" });
    // The handler's failure after the abort must not overwrite the cancellation.
    expect((await getJob(job.id)).status).toBe("cancelled");
    const events = (await (await fetch(`${server.url}/jobs/${job.id}/events`)).json()) as {
      events: Array<{ kind: string; data: unknown }>;
    };
    expect(events.events.at(-1)).toMatchObject({
      kind: "cancelled",
      data: { was: "running", reason: "test" },
    });
    const retry = await post(`/jobs/${job.id}/cancel`);
    expect(retry.status).toBe(409);
  });

  it("does not run jobs of a paused queue until it is resumed", async () => {
    expect((await post("/queues/paused-q/pause")).status).toBe(200);
    const held = (
      (await (
        await post("/jobs", { task: "quick", queue: "paused-q", payload: { n: 1 } })
      ).json()) as SubmitAnswer
    ).job;
    // A later job on another queue of the same worker completes: the worker has claimed since,
    // and would have taken the older paused-queue job first had the queue been open.
    const other = (
      (await (
        await post("/jobs", { task: "quick", queue: "open-q", payload: { n: 2 } })
      ).json()) as SubmitAnswer
    ).job;
    await waitFor(async () => (await getJob(other.id)).status === "completed", {
      message: "open-queue job done",
    });
    expect((await getJob(held.id)).status).toBe("pending");
    const queues = (await (await fetch(`${server.url}/queues`)).json()) as {
      queues: Array<{ name: string; paused: boolean; workers: Array<{ id: string }> }>;
    };
    const pausedQueue = queues.queues.find((q) => q.name === "paused-q")!;
    expect(pausedQueue.paused).toBe(true);
    expect(pausedQueue.workers.map((w) => w.id)).toContain(worker.id);

    expect((await post("/queues/paused-q/resume")).status).toBe(200);
    const done = await waitFor(
      async () => {
        const job = await getJob(held.id);
        return job.status === "completed" ? job : null;
      },
      { message: "paused job runs after resume" },
    );
    expect(done.result).toEqual({ n: 1 });
  });
});

describe("HTTP API when the database is down", () => {
  const pgwake = new Pgwake({
    connectionString: "postgres://postgres@127.0.0.1:1/nowhere",
    schema: "down",
  });
  const app = createApp({ pgwake, acceptUnknownTasks: true });
  afterAll(() => pgwake.close());

  it("answers 503 with Retry-After, keeps /health and /metrics up", async () => {
    for (const [path, init] of [
      [
        "/jobs",
        { method: "POST", headers: { "content-type": "application/json" }, body: '{"task":"x"}' },
      ],
      ["/jobs/1", {}],
      ["/jobs", {}],
      ["/queues", {}],
      ["/ready", {}],
    ] as const) {
      const res = await app.request(path, init);
      expect(res.status, path).toBe(503);
      expect(res.headers.get("retry-after"), path).toMatch(/^\d+$/);
      expect(await res.json()).toMatchObject({ error: { code: "DATABASE_UNAVAILABLE" } });
    }
    expect((await app.request("/health")).status).toBe(200);
    const metrics = await app.request("/metrics");
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/pgwake_metrics_database_up 0/);
  });
});
