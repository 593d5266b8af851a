import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask, type Worker } from "../../src/index.ts";
import { serveWorkerHealth, type WorkerHealthServer } from "../../src/worker/healthServer.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/faultProxy.ts";
import { waitFor } from "../helpers/wait.ts";

const echo = defineTask({ name: "echo", handler: (payload) => payload });

describe("worker health and metrics", () => {
  let db: TestDb;
  let proxy: FaultProxy;
  let worker: Worker;
  let server: WorkerHealthServer;

  beforeAll(async () => {
    db = await createTestDb("health", { tasks: [echo] });
    const target = new URL(db.url);
    proxy = await startFaultProxy({
      target: { host: target.hostname, port: Number(target.port || 5432) },
    });
    worker = db.pgwake.worker({
      connectionString: proxy.via(db.url),
      leaseMs: 2_000,
      heartbeatMs: 400,
      pollIntervalMs: 200,
      maintenanceIntervalMs: 0,
      networkTimeoutMs: 1_500,
      livenessMs: 500,
    });
    await worker.start();
    server = await serveWorkerHealth(worker, { port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    proxy?.heal();
    await server?.close();
    await worker?.stop({ graceMs: 500 });
    await proxy?.close();
    await db?.close();
  });

  const get = async (path: string) => {
    const res = await fetch(`${server.url}${path}`);
    return { status: res.status, text: await res.text() };
  };

  it("answers /health, and /ready once it can work", async () => {
    expect(await get("/health")).toMatchObject({ status: 200 });
    await waitFor(async () => (await get("/ready")).status === 200, { message: "ready" });
    const ready = JSON.parse((await get("/ready")).text);
    expect(ready).toMatchObject({ ready: true, lease: "live", listening: true, stuckQueues: [] });
  });

  it("counts jobs where they run and serves them as Prometheus metrics", async () => {
    const { job } = await db.pgwake.enqueue("echo", { n: 1 });
    await waitFor(async () => (await db.pgwake.getJob(job.id))?.status === "completed", {
      message: "the job to complete",
    });
    const text = await waitFor(
      async () => {
        const body = (await get("/metrics")).text;
        return /pgwake_jobs_completed_total\{queue="default",task="echo"\} 1\b/.test(body)
          ? body
          : null;
      },
      { message: "the completion to be counted" },
    );
    expect(text).toMatch(/pgwake_jobs_started_total\{queue="default",task="echo"\} 1\b/);
    expect(text).toMatch(/pgwake_claim_duration_seconds_count\{queue="default"\} \d+/);
    expect(text).toMatch(/pgwake_listener_connected 1\b/);
    // Standard process metrics, unprefixed, for stock Node.js dashboards.
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
  });

  it("reads as not ready while its database is silent, and ready again after", async () => {
    proxy.setMode("blackhole");
    const notReady = await waitFor(
      async () => {
        const res = await get("/ready");
        return res.status === 503 ? JSON.parse(res.text) : null;
      },
      { timeoutMs: 10_000, intervalMs: 50, message: "/ready to say 503" },
    );
    expect(notReady.ready).toBe(false);
    expect((await get("/health")).status).toBe(200);
    proxy.heal();
    await waitFor(async () => (await get("/ready")).status === 200, {
      timeoutMs: 20_000,
      intervalMs: 50,
      message: "/ready again after the heal",
    });
    const text = (await get("/metrics")).text;
    expect(text).toMatch(/pgwake_lease_renewals_total\{result="failed"\} [1-9]/);
    expect(text).toMatch(/pgwake_lease_renewals_total\{result="ok"\} [1-9]/);
    expect(text).toMatch(/pgwake_lease_fences_total [1-9]/);
  });
});
