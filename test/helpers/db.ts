import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { Pgwake, type PgwakeOptions } from "../../src/index.ts";

export const databaseUrl = (): string => inject("databaseUrl");

export interface TestDb {
  schema: string;
  url: string;
  pool: pg.Pool;
  pgwake: Pgwake;
  /** Runs SQL with `{{schema}}` replaced by this test's schema. */
  query: <R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ) => Promise<R[]>;
  close: () => Promise<void>;
}

/**
 * A fresh, migrated schema for one test file, dropped on close (set PGWAKE_KEEP_SCHEMAS=1 to
 * keep it for a look after a failure).
 */
export async function createTestDb(
  name: string,
  options: Omit<PgwakeOptions, "connectionString" | "pool" | "schema"> = {},
): Promise<TestDb> {
  const url = databaseUrl();
  const schema = `t_${name
    .replace(/[^a-z0-9]/gi, "_")
    .toLowerCase()
    .slice(0, 30)}_${randomBytes(3).toString("hex")}`;
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  const pgwake = new Pgwake({ ...options, pool, schema, connectionString: url });
  await pgwake.migrate();
  const query = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) =>
    (await pool.query<R>(text.replaceAll("{{schema}}", `"${schema}"`), values)).rows;
  return {
    schema,
    url,
    pool,
    pgwake,
    query,
    close: async () => {
      if (!process.env.PGWAKE_KEEP_SCHEMAS) await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    },
  };
}
