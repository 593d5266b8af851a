import pg from "pg";
import { createScratchDatabase, type ScratchDatabase } from "./databases.ts";

/** WAL written between two positions, attributed to the relations of some schemas. */
export interface WalUsage {
  /** Records that touch a relation of the schemas, plus the commit records of their xids. */
  records: number;
  /** Their bytes, full-page images included. */
  bytes: number;
  /** Full-page images among them, and their bytes. */
  fpiBytes: number;
  fpiRecords: number;
  /** Records and bytes by resource manager and record type (Heap/UPDATE, Btree/INSERT_LEAF, …). */
  byManager: Record<string, { records: number; bytes: number }>;
  /** Every byte the server wrote in that range, whoever wrote it (pg_current_wal_lsn diff). */
  serverBytes: number;
}

// The records of a WAL range that touch one of `$4` (relfilenodes) in database `$3`, and the
// commit or abort records of the transactions that wrote them. `block_ref` is pg_walinspect's
// text ("blkref #0: rel 1663/16384/24576 fork main blk 7"): the same format in 15 to 18.
const ATTRIBUTE = `
  WITH r AS MATERIALIZED (
    SELECT start_lsn, xid, resource_manager || '/' || record_type AS rm, record_length, fpi_length,
           block_ref
    FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)
  ), touching AS MATERIALIZED (
    SELECT r.start_lsn, r.xid FROM r
    WHERE r.block_ref IS NOT NULL AND EXISTS (
      SELECT 1 FROM regexp_matches(r.block_ref, 'rel \\d+/(\\d+)/(\\d+)', 'g') m
      WHERE m[1]::oid = $3::oid AND m[2]::oid = ANY ($4::oid[]))
  ), mine AS (
    SELECT r.* FROM r WHERE r.start_lsn IN (SELECT start_lsn FROM touching)
    UNION ALL
    SELECT r.* FROM r
    WHERE r.rm LIKE 'Transaction/%' AND r.xid <> '0'
      AND r.xid IN (SELECT DISTINCT xid FROM touching WHERE xid <> '0')
  )
  SELECT rm, count(*)::float8 AS records, sum(record_length)::float8 AS bytes,
         sum(fpi_length)::float8 AS fpi_bytes,
         count(*) FILTER (WHERE fpi_length > 0)::float8 AS fpi_records
  FROM mine GROUP BY rm`;

// Every relation with storage of the schemas, their TOAST tables and TOAST indexes.
const RELFILENODES = `
  WITH rels AS (
    SELECT c.oid, c.reltoastrelid FROM pg_class c
    WHERE c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname = ANY ($1::text[]))
  )
  SELECT (SELECT oid FROM pg_database WHERE datname = current_database()) AS db,
         array_agg(DISTINCT n) FILTER (WHERE n IS NOT NULL) AS nodes
  FROM (
    SELECT pg_relation_filenode(oid) AS n FROM rels
    UNION ALL SELECT pg_relation_filenode(reltoastrelid) FROM rels WHERE reltoastrelid <> 0
    UNION ALL SELECT pg_relation_filenode(i.indexrelid) FROM pg_index i
      WHERE i.indrelid IN (SELECT reltoastrelid FROM rels WHERE reltoastrelid <> 0)
  ) x`;

/**
 * Measures the WAL a workload writes to its own tables with pg_walinspect (PostgreSQL 15+), which
 * reads the records back from the server's WAL: exact per workload even while other databases of
 * the server write (cluster-wide counters such as pg_stat_wal are not). The extension lives in a
 * scratch database of the bench's own. Relfilenodes change with TRUNCATE: take `target()` after
 * the last truncation before the measured range.
 */
export class WalMeter {
  private readonly tools: ScratchDatabase;
  private readonly pool: pg.Pool;

  private constructor(tools: ScratchDatabase, pool: pg.Pool) {
    this.tools = tools;
    this.pool = pool;
  }

  /** A meter, or the reason there is none (no pg_walinspect, no right to read WAL). */
  static async open(admin: pg.Pool, url: string): Promise<WalMeter | string> {
    let tools: ScratchDatabase | undefined;
    try {
      tools = await createScratchDatabase(admin, url, "wal");
      const pool = new pg.Pool({
        connectionString: tools.url,
        max: 2,
        application_name: "bench-wal",
      });
      pool.on("error", () => {});
      await pool.query("CREATE EXTENSION pg_walinspect");
      return new WalMeter(tools, pool);
    } catch (error) {
      await tools?.drop().catch(() => {});
      return `pg_walinspect unavailable: ${(error as Error).message}`;
    }
  }

  /** The current WAL insert position. */
  async position(): Promise<string> {
    const { rows } = await this.pool.query<{ lsn: string }>(
      "SELECT pg_current_wal_lsn()::text AS lsn",
    );
    return rows[0]!.lsn;
  }

  /** What to attribute to: the relations of `schemas`, read through `db` (their database). */
  static async target(
    db: pg.Pool | pg.ClientBase,
    schemas: readonly string[],
  ): Promise<{ db: number; nodes: number[] }> {
    const { rows } = await db.query<{ db: number; nodes: number[] | null }>(RELFILENODES, [
      schemas,
    ]);
    return { db: rows[0]!.db, nodes: (rows[0]!.nodes ?? []).map(Number) };
  }

  /** WAL between `from` and `to` that touched the target's relations. */
  async usage(
    from: string,
    to: string,
    target: { db: number; nodes: number[] },
  ): Promise<WalUsage> {
    // pg_walinspect reads only flushed WAL ("cannot accept future end LSN"): the insert position
    // read at the end may be ahead of the flush for a moment (the WAL writer flushes every
    // wal_writer_delay). Wait for it.
    const deadline = Date.now() + 5_000;
    for (;;) {
      const { rows: flushed } = await this.pool.query<{ ok: boolean }>(
        "SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS ok",
        [to],
      );
      if (flushed[0]!.ok) break;
      if (Date.now() > deadline) throw new Error(`WAL up to ${to} not flushed after 5 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const { rows } = await this.pool.query<{
      rm: string;
      records: number;
      bytes: number;
      fpi_bytes: number;
      fpi_records: number;
    }>(ATTRIBUTE, [from, to, target.db, target.nodes]);
    const { rows: diff } = await this.pool.query<{ bytes: number }>(
      "SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::float8 AS bytes",
      [from, to],
    );
    const usage: WalUsage = {
      records: 0,
      bytes: 0,
      fpiBytes: 0,
      fpiRecords: 0,
      byManager: {},
      serverBytes: diff[0]!.bytes,
    };
    for (const row of rows) {
      usage.records += row.records;
      usage.bytes += row.bytes;
      usage.fpiBytes += row.fpi_bytes;
      usage.fpiRecords += row.fpi_records;
      usage.byManager[row.rm] = { records: row.records, bytes: row.bytes };
    }
    return usage;
  }

  async close(): Promise<void> {
    await this.pool.end();
    await this.tools.drop();
  }
}
