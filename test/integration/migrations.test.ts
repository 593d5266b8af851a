import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadMigrations } from "../../src/db/migrate.ts";
import { migrate, Pgwake, PgwakeError } from "../../src/index.ts";
import { databaseUrl } from "../helpers/db.ts";

const run = promisify(execFile);
const FIXTURE = fileURLToPath(new URL("../fixtures/migrate-process.ts", import.meta.url));

describe("migrations", () => {
  let url: string;
  let admin: pg.Pool;
  const schemas: string[] = [];
  const fresh = () => {
    const name = `t_mig_${randomBytes(4).toString("hex")}`;
    schemas.push(name);
    return name;
  };

  beforeAll(() => {
    url = databaseUrl();
    admin = new pg.Pool({ connectionString: url, max: 2 });
  });
  afterAll(async () => {
    if (!process.env.PGWAKE_KEEP_SCHEMAS) {
      for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    }
    await admin?.end();
  });

  const versionsIn = async (schema: string): Promise<number[]> =>
    (
      await admin.query<{ version: number }>(
        `SELECT version FROM "${schema}".migrations ORDER BY version`,
      )
    ).rows.map((r) => r.version);

  it("6 concurrent migrate() calls apply each version exactly once", {
    timeout: 60_000,
  }, async () => {
    const known = (await loadMigrations()).map((m) => m.version);
    expect(known[0]).toBe(1);
    const schema = fresh();
    // Six clients, each with its own pool: six sessions racing like six processes starting.
    const clients = Array.from({ length: 6 }, () => new Pgwake({ connectionString: url, schema }));
    try {
      const results = await Promise.all(clients.map((c) => c.migrate()));
      for (const r of results) expect(r.version).toBe(known.at(-1));
      const applied = results.flatMap((r) => r.applied).sort((a, b) => a - b);
      expect(applied).toEqual(known);
      // One migrator did the work, the others found it done.
      expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
      expect(await versionsIn(schema)).toEqual(known);
      expect(await clients[0]!.schemaState()).toEqual({
        current: known.at(-1),
        latest: known.at(-1),
      });

      // The schema works: a job goes in.
      const { job } = await clients[0]!.enqueue("anything", { ok: 1 });
      expect(job.status).toBe("pending");
      // And migrating again is a no-op.
      expect(await clients[1]!.migrate()).toEqual({ applied: [], version: known.at(-1) });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it("several processes migrating one schema at once", { timeout: 120_000 }, async () => {
    const known = (await loadMigrations()).map((m) => m.version);
    const schema = fresh();
    const outputs = await Promise.all(
      Array.from({ length: 4 }, () =>
        run(process.execPath, [FIXTURE, url, schema], { timeout: 60_000 }),
      ),
    );
    const results = outputs.map(
      (o) => JSON.parse(o.stdout) as { applied: number[]; version: number },
    );
    expect(results.flatMap((r) => r.applied).sort((a, b) => a - b)).toEqual(known);
    expect(await versionsIn(schema)).toEqual(known);
  });

  it("refuses a schema newer than the code", async () => {
    const schema = fresh();
    const pgwake = new Pgwake({ connectionString: url, schema });
    try {
      await pgwake.migrate();
      const { latest } = await pgwake.schemaState();
      await admin.query(
        `INSERT INTO "${schema}".migrations (version, name) VALUES ($1, 'from_the_future')`,
        [latest + 1],
      );
      expect(await pgwake.schemaState()).toEqual({ current: latest + 1, latest });
      const error = await pgwake.migrate().then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PgwakeError);
      expect((error as PgwakeError).code).toBe("SCHEMA_TOO_NEW");
      expect((error as PgwakeError).message).toContain(`version ${latest + 1}`);
      expect((error as PgwakeError).details).toEqual({ current: latest + 1, latest });
      // The refusal released the migration lock: another migrator is refused too, not stuck.
      await expect(migrate(pgwake.pool, { schema })).rejects.toMatchObject({
        code: "SCHEMA_TOO_NEW",
      });
    } finally {
      await pgwake.close();
    }
  });

  it.each([
    "",
    "Upper",
    "1starts_with_digit",
    "has-dash",
    'quote"d',
    "semi;colon",
    "sp ace",
    "x".repeat(64),
    // Postgres reserves the pg_ prefix: CREATE SCHEMA would refuse it later, less clearly.
    "pg_reserved",
  ])("refuses the schema name %j", async (name) => {
    let thrown: unknown;
    try {
      new Pgwake({ connectionString: url, schema: name });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect((thrown as Error).message).toMatch(/invalid schema name/);
    // A bad option is the caller's mistake: a typed error like every other invalid option.
    expect(thrown).toBeInstanceOf(PgwakeError);
    expect((thrown as PgwakeError).code).toBe("INVALID_OPTIONS");
    await expect(migrate(admin, { schema: name })).rejects.toThrow(/invalid schema name/);
    if (name) {
      const [{ exists }] = (
        await admin.query<{ exists: boolean }>(
          "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS exists",
          [name],
        )
      ).rows as [{ exists: boolean }];
      expect(exists).toBe(false);
    }
  });

  it("accepts a 63-character lower-case schema name", () => {
    expect(new Pgwake({ connectionString: url, schema: `a${"b".repeat(62)}` }).schema).toHaveLength(
      63,
    );
  });
});
