import { readdir, readFile } from "node:fs/promises";
import type pg from "pg";
import { PgwakeError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { silentLogger } from "../logger.ts";
import { quoteIdent, SchemaSql } from "./sql.ts";

const MIGRATIONS_DIR = new URL("../../db/migrations/", import.meta.url);
const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

let cached: Promise<Migration[]> | undefined;

/** The migrations this code knows, in order. */
export function loadMigrations(): Promise<Migration[]> {
  cached ??= (async () => {
    const files = (await readdir(MIGRATIONS_DIR)).filter((f) => FILE_PATTERN.test(f)).sort();
    return Promise.all(
      files.map(async (file) => {
        const [, version, name] = FILE_PATTERN.exec(file)!;
        return {
          version: Number(version),
          name: name!,
          sql: await readFile(new URL(file, MIGRATIONS_DIR), "utf8"),
        };
      }),
    );
  })();
  return cached;
}

export interface SchemaState {
  /** The newest version applied to the database, 0 when none. */
  current: number;
  /** The newest version this code knows. */
  latest: number;
}

/** Reads which version the schema is at, without changing anything. */
export async function schemaState(
  db: Pick<pg.Pool, "query">,
  schema: string,
): Promise<SchemaState> {
  const migrations = await loadMigrations();
  const latest = migrations.at(-1)?.version ?? 0;
  const exists = await db.query<{ found: boolean }>("SELECT to_regclass($1) IS NOT NULL AS found", [
    `${quoteIdent(schema)}.migrations`,
  ]);
  if (!exists.rows[0]?.found) return { current: 0, latest };
  const { rows } = await db.query<{ version: number | null }>(
    `SELECT max(version) AS version FROM ${quoteIdent(schema)}.migrations`,
  );
  return { current: rows[0]?.version ?? 0, latest };
}

/**
 * Applies every pending migration, each in its own transaction with its version row. A session
 * advisory lock serialises concurrent migrators, so many processes may start at once.
 * Refuses to touch a schema that a newer pgwake has migrated past what this code knows.
 */
export async function migrate(
  pool: pg.Pool,
  options: { schema: string; logger?: Logger },
): Promise<{ applied: number[]; version: number }> {
  const sql = new SchemaSql(options.schema);
  const logger = options.logger ?? silentLogger;
  const migrations = await loadMigrations();
  const latest = migrations.at(-1)?.version ?? 0;
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query("SELECT pg_advisory_lock(hashtext('pgwake:migrate'), hashtext($1))", [
      sql.schema,
    ]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(sql.schema)}`);
      await client.query(
        sql.render(`CREATE TABLE IF NOT EXISTS {{schema}}.migrations (
          version    integer PRIMARY KEY,
          name       text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        )`),
      );
      const { rows } = await client.query<{ version: number }>(
        sql.render("SELECT version FROM {{schema}}.migrations ORDER BY version"),
      );
      const done = new Set(rows.map((r) => r.version));
      const newest = rows.at(-1)?.version ?? 0;
      if (newest > latest) {
        throw new PgwakeError(
          "SCHEMA_TOO_NEW",
          `schema "${sql.schema}" is at version ${newest}, but this pgwake only knows up to ${latest}: upgrade pgwake before running it against this database`,
          { details: { current: newest, latest } },
        );
      }
      for (const migration of migrations) {
        if (done.has(migration.version)) continue;
        try {
          await client.query("BEGIN");
          await client.query(sql.render(migration.sql));
          await client.query(
            sql.render("INSERT INTO {{schema}}.migrations (version, name) VALUES ($1, $2)"),
            [migration.version, migration.name],
          );
          await client.query("COMMIT");
        } catch (error) {
          await client.query("ROLLBACK").catch(() => {});
          throw new PgwakeError(
            "MIGRATION_FAILED",
            `migration ${migration.version}_${migration.name} failed: ${(error as Error).message}`,
            { cause: error },
          );
        }
        applied.push(migration.version);
        logger.info({ schema: sql.schema, version: migration.version }, "applied migration");
      }
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtext('pgwake:migrate'), hashtext($1))", [
        sql.schema,
      ]);
    }
  } finally {
    client.release();
  }
  return { applied, version: latest };
}
