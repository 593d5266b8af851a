import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { finished, killAll, pgwake, type Run } from "../fixtures/cli/spawn.ts";
import { databaseUrl } from "../helpers/db.ts";
import { findPgBouncer, type PgBouncer, startPgBouncer } from "../helpers/pgbouncer.ts";
import { freePort } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";

// Issue 16: behind PgBouncer in transaction mode with PgBouncer's defaults, the worker failed
// for ever with "unsupported startup parameter: options" and, once that was ignored, named
// prepared statements failed. Here the real commands run through a real PgBouncer (Debian's,
// 1.18: no prepared statement support), the API and two workers, with the LISTEN connection and
// migrations on a direct URL.

const installed = findPgBouncer() !== undefined;
// CI installs PgBouncer (.ci/run): there, a missing one is a failure, not a skip.
const run = installed || process.env.CI ? describe : describe.skip;

const JOBS = 2_000;
const KEY = "bouncer-key";

run("pgwake behind PgBouncer in transaction mode", () => {
  let bouncer: PgBouncer;
  let direct: pg.Pool;
  const schema = `t_bouncer_${randomBytes(3).toString("hex")}`;
  const processes: Run[] = [];
  let apiUrl: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    bouncer = await startPgBouncer(databaseUrl());
    direct = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
    env = {
      DATABASE_URL: bouncer.url,
      PGWAKE_POOLER: "on",
      PGWAKE_LISTEN_URL: databaseUrl(),
      PGWAKE_SCHEMA: schema,
      PGWAKE_API_KEYS: KEY,
      PGWAKE_LOG_LEVEL: "info",
    };
  });

  afterAll(async () => {
    killAll();
    await direct?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await direct?.end();
    await bouncer?.stop();
  });

  it("migrates over the direct URL, then the API and two workers complete 2,000 jobs with no error or warning", async () => {
    const migrate = pgwake(["migrate"], env);
    expect((await finished(migrate)).code, migrate.stderr()).toBe(0);

    const port = await freePort();
    apiUrl = `http://127.0.0.1:${port}`;
    processes.push(pgwake(["api"], { ...env, PORT: String(port) }));
    for (let i = 0; i < 2; i++) {
      processes.push(pgwake(["worker", "--concurrency", "8"], env));
    }
    const auth = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
    await waitFor(
      async () => (await fetch(`${apiUrl}/ready`).catch(() => undefined))?.status === 200,
      { timeoutMs: 30_000, intervalMs: 100, message: "the API ready" },
    );
    // Both workers registered and listening (their LISTEN connection bypasses the pooler).
    await waitFor(
      async () => {
        const { rows } = await direct.query<{ n: number }>(
          `SELECT count(*)::integer AS n FROM "${schema}".workers
           WHERE listening AND reaped_at IS NULL AND lease_expires_at > now()`,
        );
        return rows[0]!.n === 2;
      },
      { timeoutMs: 30_000, intervalMs: 100, message: "two listening workers" },
    );

    // Submitted both ways: batches, and single submissions at once (each its own transaction
    // through the pooler).
    const batches = Array.from({ length: 3 }, (_, b) =>
      fetch(`${apiUrl}/jobs/batch`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({
          jobs: Array.from({ length: 500 }, (_, i) => ({
            task: "demo.echo",
            payload: { b, i },
          })),
        }),
      }),
    );
    const singles = Array.from({ length: JOBS - 1_500 }, (_, i) =>
      fetch(`${apiUrl}/jobs`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ task: "demo.echo", payload: { single: i } }),
      }),
    );
    const answers = await Promise.all([...batches, ...singles]);
    const refused = answers.filter((res) => res.status !== 201);
    expect(
      await Promise.all(refused.map(async (res) => `${res.status} ${await res.text()}`)),
    ).toEqual([]);

    const count = async (status: string) =>
      Number(
        (
          await direct.query<{ n: string }>(
            `SELECT count(*) AS n FROM "${schema}".all_jobs WHERE status = $1`,
            [status],
          )
        ).rows[0]!.n,
      );
    await waitFor(async () => (await count("completed")) === JOBS, {
      timeoutMs: 60_000,
      intervalMs: 200,
      message: `${JOBS} jobs completed`,
    });
    expect(await count("failed")).toBe(0);

    for (const child of processes) child.child.kill("SIGTERM");
    const exits = await Promise.all(processes.map((child) => finished(child, 30_000)));
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0]);

    // No process logged a warning or an error (pino levels: 40 warn, 50 error, 60 fatal).
    const complaints = processes.flatMap((child) =>
      [...child.logs("stdout"), ...child.logs("stderr")].filter(
        (line) => typeof line.level === "number" && line.level >= 40,
      ),
    );
    expect(complaints).toEqual([]);
    // PgBouncer saw no startup parameter it refused, no failed statement.
    expect(bouncer.log()).not.toMatch(/unsupported startup parameter|ERROR|WARNING/);
  });
});
