import { randomBytes } from "node:crypto";
import pg from "pg";
import { quoteIdent } from "../../src/db/sql.ts";

/** `url` with its database replaced by `name`. */
export function databaseUrl(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

/** A database of the bench's own on the same server, dropped by `drop()`. */
export interface ScratchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/**
 * Creates `pgwake_bench_<prefix>_<random>` on the server of `admin` (the bench connects as a
 * role that may create databases). Dropping it waits for its connections to be closed by their
 * owners, then forces out any left.
 */
export async function createScratchDatabase(
  admin: pg.Pool,
  url: string,
  prefix: string,
): Promise<ScratchDatabase> {
  const name = `pgwake_bench_${prefix}_${randomBytes(3).toString("hex")}`;
  await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
  return {
    name,
    url: databaseUrl(url, name),
    async drop() {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    },
  };
}

/**
 * A transaction held open in another database: BEGIN and an xid (txid_current()), kept until
 * `release()`. Every snapshot taken anywhere on the server then counts that xid as running, so
 * rows deleted or updated after it began cannot be removed from any table of any database —
 * by vacuum, by HOT pruning, or by index scans marking entries dead.
 */
export async function holdXmin(url: string): Promise<{ xid: string; release(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url, application_name: "bench-held-xmin" });
  client.on("error", () => {});
  await client.connect();
  await client.query("BEGIN");
  const { rows } = await client.query<{ xid: string }>("SELECT txid_current()::text AS xid");
  return {
    xid: rows[0]!.xid,
    async release() {
      await client.query("ROLLBACK").catch(() => {});
      await client.end();
    },
  };
}
