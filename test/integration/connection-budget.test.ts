import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Pgwake } from "../../src/index.ts";
import { finished, killAll, pgwake, type Run } from "../fixtures/cli/spawn.ts";
import { startDedicatedPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";

// Issue 16: a worker's connections are bounded — its LISTEN connection plus its pool
// (PGWAKE_POOL_SIZE) — so a fleet's need is processes × (1 + pool size). Here 40 worker
// processes with a pool of 1 (80 connections) share a server of max_connections = 100 with this
// test's own 2, run 2,000 jobs, and nothing fails to connect.

const WORKERS = 40;
const POOL_SIZE = 1;
const TEST_CONNECTIONS = 2;
const JOBS = 2_000;
const BUDGET = WORKERS * (1 + POOL_SIZE) + TEST_CONNECTIONS;

describe("the connection budget", () => {
  let server: TestPostgres;
  let admin: pg.Pool;
  let producer: Pgwake;
  const workers: Run[] = [];
  let peak = 0;
  let sampling = true;
  let sampler: Promise<void> | undefined;

  beforeAll(async () => {
    server = await startDedicatedPostgres(["-c", "max_connections=100"]);
    admin = new pg.Pool({ connectionString: server.url, max: 1 });
    const pool = new pg.Pool({ connectionString: server.url, max: TEST_CONNECTIONS - 1 });
    // The server is stopped at the end: its 57P01 reaches an idle client through its pool's
    // 'error' event, a client being ended through its own, and with no listener either fails
    // the run as an unhandled error.
    for (const p of [admin, pool]) {
      p.on("error", () => {});
      p.on("connect", (client) => client.on("error", () => {}));
    }
    producer = new Pgwake({ connectionString: server.url, schema: "budget", pool });
  });

  afterAll(async () => {
    sampling = false;
    await sampler;
    killAll();
    await producer?.close();
    await producer?.pool.end().catch(() => {});
    await admin?.end();
    await server?.stop();
  });

  it(`${WORKERS} worker processes fit in max_connections = 100 (each 1 listener + a pool of ${POOL_SIZE})`, {
    timeout: 300_000,
  }, async () => {
    const { rows } = await admin.query<{ max_connections: string }>("SHOW max_connections");
    expect(Number(rows[0]!.max_connections)).toBe(100);
    await producer.migrate();

    // Connections to the server, sampled from the test's own connection the whole time.
    sampler = (async () => {
      while (sampling) {
        const { rows } = await admin.query<{ n: number }>(
          "SELECT count(*)::integer AS n FROM pg_stat_activity WHERE backend_type = 'client backend'",
        );
        peak = Math.max(peak, rows[0]!.n);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    const env = {
      DATABASE_URL: server.url,
      PGWAKE_SCHEMA: "budget",
      PGWAKE_POOL_SIZE: String(POOL_SIZE),
      PGWAKE_CONCURRENCY: "4",
      PGWAKE_LOG_LEVEL: "warn",
    };
    for (let i = 0; i < WORKERS; i++) workers.push(pgwake(["worker"], env));
    await waitFor(
      async () => {
        const { rows } = await admin.query<{ n: number }>(
          "SELECT count(*)::integer AS n FROM budget.workers WHERE listening AND reaped_at IS NULL",
        );
        const exited = workers.filter((w) => w.child.exitCode !== null);
        if (exited.length > 0) throw new Error(`a worker exited: ${exited[0]!.stderr()}`);
        return rows[0]!.n === WORKERS;
      },
      { timeoutMs: 150_000, intervalMs: 250, message: `${WORKERS} listening workers` },
    );

    for (let i = 0; i < JOBS; i += 500) {
      await producer.enqueueMany(
        Array.from({ length: 500 }, (_, k) => ({ task: "demo.echo", payload: { n: i + k } })),
      );
    }
    await waitFor(
      async () => {
        const { rows } = await admin.query<{ n: number }>(
          "SELECT count(*)::integer AS n FROM budget.all_jobs WHERE status = 'completed'",
        );
        return rows[0]!.n === JOBS;
      },
      { timeoutMs: 120_000, intervalMs: 200, message: `${JOBS} jobs completed` },
    );
    const { rows: ran } = await admin.query<{ n: number }>(
      "SELECT count(DISTINCT lease_owner)::integer AS n FROM budget.all_jobs",
    );

    for (const worker of workers) worker.child.kill("SIGTERM");
    const exits = await Promise.all(workers.map((w) => finished(w, 60_000)));
    sampling = false;
    await sampler;

    expect(exits.filter((e) => e.code !== 0)).toEqual([]);
    // Nothing was refused a connection, nothing else went wrong.
    // (A connection attempt that timed out while 40 processes start on two cores is retried with
    // a warning: not a refusal.)
    const complaints = workers.flatMap((w) => [
      ...w
        .logs("stdout")
        .filter(
          (line) =>
            (typeof line.level === "number" && line.level >= 50) ||
            /too many clients|53300|reserved/i.test(JSON.stringify(line)),
        ),
      ...w
        .stderr()
        .split("\n")
        .filter((line) => /too many clients|53300|error/i.test(line)),
    ]);
    expect(complaints).toEqual([]);
    expect(peak).toBeGreaterThan(WORKERS); // the fleet was connected at once
    expect(peak).toBeLessThanOrEqual(BUDGET);
    // Work spread over the fleet rather than one process.
    expect(ran[0]!.n).toBeGreaterThan(1);
  });
});
