import { randomBytes } from "node:crypto";
import pg from "pg";
import { quoteIdent } from "../../src/db/sql.ts";
import { createPool, Pgwake } from "../../src/index.ts";

export type SystemName = "pgwake" | "graphile" | "pgboss";

export const SYSTEM_LABEL: Record<SystemName, string> = {
  pgwake: "pgwake",
  graphile: "graphile-worker",
  pgboss: "pg-boss",
};

/** The producer/admin side of one job system in one fresh schema, as the benchmark drives it. */
export interface SystemAdapter {
  readonly name: SystemName;
  readonly schema: string;
  readonly queue: string;
  readonly task: string;
  /** The library's bulk insert, in chunks of `chunk`. */
  bulk(count: number, chunk: number): Promise<void>;
  /** The library's single-job enqueue. */
  single(payload: Record<string, unknown>): Promise<void>;
  /** The system's SQL-level enqueue, one job per call, if it has one. */
  sqlSingle?(db: pg.ClientBase | pg.Pool): Promise<void>;
  /** Jobs not finished yet, and the database clock (epoch ms) when that was read. */
  remaining(): Promise<{ remaining: number; at: number }>;
  /** Empties the job table between repetitions. */
  reset(): Promise<void>;
  /** VACUUM ANALYZE of the job table, so every repetition starts from the same state. */
  vacuum(): Promise<void>;
  /** The job table, schema-qualified and quoted. */
  readonly jobTable: string;
  drop(): Promise<void>;
}

export function freshSchemaName(prefix: string): string {
  return `bench_${prefix}_${randomBytes(4).toString("hex")}`;
}

const PAYLOAD = {};

/** An admin pool the scenarios share for small queries. */
export function adminPool(url: string): pg.Pool {
  return new pg.Pool({ connectionString: url, max: 4, application_name: "pgwake-bench" });
}

export async function dbNowMs(db: pg.Pool | pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ t: number }>(
    "SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS t",
  );
  return rows[0]!.t;
}

export async function createPgwake(
  url: string,
  prefix: string,
  options: { poolSize?: number } = {},
): Promise<SystemAdapter & { pgwake: Pgwake; pool: pg.Pool }> {
  const schema = freshSchemaName(prefix);
  const pool = createPool({ connectionString: url, max: options.poolSize ?? 16 });
  const pgwake = new Pgwake({ pool, connectionString: url, schema });
  await pgwake.migrate();
  const q = quoteIdent(schema);
  const queue = "default";
  const task = "noop";
  return {
    name: "pgwake",
    schema,
    queue,
    task,
    pgwake,
    pool,
    jobTable: `${q}.jobs`,
    async bulk(count, chunk) {
      for (let done = 0; done < count; done += chunk) {
        const n = Math.min(chunk, count - done);
        await pgwake.enqueueMany(Array.from({ length: n }, () => ({ task, payload: PAYLOAD })));
      }
    },
    async single(payload) {
      await pgwake.enqueue(task, payload);
    },
    async sqlSingle(db) {
      await db.query(`SELECT (${q}.enqueue($1, $2::jsonb)).duplicate`, [task, "{}"]);
    },
    async remaining() {
      const { rows } = await pool.query<{ n: number; t: number }>(
        `SELECT (SELECT count(*) FROM ${q}.jobs WHERE status IN ('pending', 'retrying', 'running'))::int AS n,
                extract(epoch FROM clock_timestamp())::float8 * 1000 AS t`,
      );
      return { remaining: rows[0]!.n, at: rows[0]!.t };
    },
    async reset() {
      // Finished jobs leave for job_history: empty it too, so every repetition starts alike.
      await pool.query(
        `TRUNCATE ${q}.jobs, ${q}.job_history, ${q}.job_events, ${q}.queue_minutes, ${q}.job_keys`,
      );
    },
    async vacuum() {
      await pool.query(`VACUUM ANALYZE ${q}.jobs`);
    },
    async drop() {
      await pool.query(`DROP SCHEMA IF EXISTS ${q} CASCADE`);
      await pgwake.close();
      await pool.end();
    },
  };
}

export async function createGraphile(url: string, prefix: string): Promise<SystemAdapter> {
  const { makeWorkerUtils, runMigrations, Logger } = await import("graphile-worker");
  const logger = new Logger(() => () => {});
  const schema = freshSchemaName(prefix);
  const pool = new pg.Pool({ connectionString: url, max: 16, application_name: "bench-graphile" });
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  await runMigrations({ pgPool: pool, schema, logger });
  const utils = await makeWorkerUtils({ pgPool: pool, schema, logger });
  const q = quoteIdent(schema);
  const queue = "default";
  const task = "noop";
  return {
    name: "graphile",
    schema,
    queue,
    task,
    jobTable: `${q}._private_jobs`,
    async bulk(count, chunk) {
      for (let done = 0; done < count; done += chunk) {
        const n = Math.min(chunk, count - done);
        await utils.addJobs(
          Array.from({ length: n }, () => ({ identifier: task, payload: PAYLOAD })),
        );
      }
    },
    async single(payload) {
      await utils.addJob(task, payload);
    },
    async sqlSingle(db) {
      await db.query(`SELECT (${q}.add_job($1, $2::json)).id`, [task, "{}"]);
    },
    async remaining() {
      const { rows } = await pool.query<{ n: number; t: number }>(
        `SELECT (SELECT count(*) FROM ${q}._private_jobs)::int AS n,
                extract(epoch FROM clock_timestamp())::float8 * 1000 AS t`,
      );
      return { remaining: rows[0]!.n, at: rows[0]!.t };
    },
    async reset() {
      await pool.query(`DELETE FROM ${q}._private_jobs`);
    },
    async vacuum() {
      await pool.query(`VACUUM ANALYZE ${q}._private_jobs`);
    },
    async drop() {
      await utils.release();
      await pool.query(`DROP SCHEMA IF EXISTS ${q} CASCADE`);
      await pool.end();
    },
  };
}

export async function createPgBoss(url: string, prefix: string): Promise<SystemAdapter> {
  const { PgBoss } = await import("pg-boss");
  const schema = freshSchemaName(prefix);
  const queue = "noop";
  const boss = new PgBoss({
    connectionString: url,
    schema,
    max: 16,
    supervise: false,
    schedule: false,
  });
  boss.on("error", () => {});
  await boss.start();
  // notify: workers of this queue wake on NOTIFY rather than on their next poll (pg-boss's
  // documented low-latency setting; needs useListenNotify on the worker side).
  await boss.createQueue(queue, { notify: true });
  const pool = new pg.Pool({ connectionString: url, max: 4, application_name: "bench-pgboss" });
  const q = quoteIdent(schema);
  return {
    name: "pgboss",
    schema,
    queue,
    task: queue,
    jobTable: `${q}.job`,
    async bulk(count, chunk) {
      for (let done = 0; done < count; done += chunk) {
        const n = Math.min(chunk, count - done);
        await boss.insert(
          queue,
          Array.from({ length: n }, () => ({ data: PAYLOAD })),
        );
      }
    },
    async single(payload) {
      await boss.send(queue, payload);
    },
    async remaining() {
      const { rows } = await pool.query<{ n: number; t: number }>(
        `SELECT (SELECT count(*) FROM ${q}.job WHERE name = $1 AND state < 'completed')::int AS n,
                extract(epoch FROM clock_timestamp())::float8 * 1000 AS t`,
        [queue],
      );
      return { remaining: rows[0]!.n, at: rows[0]!.t };
    },
    async reset() {
      await pool.query(`DELETE FROM ${q}.job WHERE name = $1`, [queue]);
    },
    async vacuum() {
      await pool.query(`VACUUM ANALYZE ${q}.job`);
    },
    async drop() {
      await boss.stop({ graceful: false, close: true, timeout: 2_000 });
      await pool.query(`DROP SCHEMA IF EXISTS ${q} CASCADE`);
      await pool.end();
    },
  };
}

export function createSystem(
  name: SystemName,
  url: string,
  prefix: string,
): Promise<SystemAdapter> {
  if (name === "pgwake") return createPgwake(url, prefix);
  if (name === "graphile") return createGraphile(url, prefix);
  return createPgBoss(url, prefix);
}
