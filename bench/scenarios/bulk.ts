import type pg from "pg";
import { quoteIdent } from "../../src/db/sql.ts";
import type { Queryable } from "../../src/db/types.ts";
import type { BenchContext } from "../lib/context.ts";
import { copyFrom, copyText } from "../lib/copyIn.ts";
import { formatNumber } from "../lib/format.ts";
import { nowMs, summarize } from "../lib/stats.ts";
import {
  createGraphile,
  createPgwake,
  type SystemAdapter,
  type SystemName,
} from "../lib/systems.ts";
import { WalMeter, type WalUsage } from "../lib/wal.ts";

/** One way of inserting `n` jobs in one call; returns the milliseconds of its phases. */
interface BulkWay {
  system: SystemName;
  variant: string;
  label: string;
  adapter: SystemAdapter;
  insert(n: number): Promise<Record<string, number>>;
}

/** Where a library call's time goes: before its statement, the statement, after it. */
function timedClient(pool: pg.Pool): {
  client: Queryable;
  marks: { sent: number; answered: number };
} {
  const marks = { sent: 0, answered: 0 };
  const client = {
    query: async (config: pg.QueryConfig) => {
      marks.sent = nowMs();
      const result = await pool.query(config);
      marks.answered = nowMs();
      return result;
    },
  } as unknown as Queryable;
  return { client, marks };
}

// The prototypes insert what `insert_jobs` inserts for keyless jobs due now (status pending,
// ready_seq = id, the queue registered) and return only the ids.
const FROM_ARRAYS = (q: string) => `
  WITH input AS MATERIALIZED (
    SELECT t.task, t.payload, nextval('${q}.jobs_id_seq'::regclass) AS id
    FROM unnest($1::text[], $2::jsonb[]) WITH ORDINALITY AS t(task, payload, n) ORDER BY t.n
  ), registered AS (
    INSERT INTO ${q}.queues (name) VALUES ('default') ON CONFLICT (name) DO NOTHING
  )
  INSERT INTO ${q}.jobs (id, task, payload, queue, priority, run_at, status, ready_seq, max_attempts)
  OVERRIDING SYSTEM VALUE
  SELECT i.id, i.task, i.payload, 'default', 0, now(), 'pending', i.id, 10 FROM input i ORDER BY i.id
  RETURNING id`;

const FROM_STAGING = (q: string) => `
  WITH input AS MATERIALIZED (
    SELECT s.task, s.payload, nextval('${q}.jobs_id_seq'::regclass) AS id
    FROM bench_staging s ORDER BY s.n
  ), registered AS (
    INSERT INTO ${q}.queues (name) VALUES ('default') ON CONFLICT (name) DO NOTHING
  )
  INSERT INTO ${q}.jobs (id, task, payload, queue, priority, run_at, status, ready_seq, max_attempts)
  OVERRIDING SYSTEM VALUE
  SELECT i.id, i.task, i.payload, 'default', 0, now(), 'pending', i.id, 10 FROM input i ORDER BY i.id
  RETURNING id`;

function ways(
  pgwake: Awaited<ReturnType<typeof createPgwake>>,
  graphile: SystemAdapter,
  client: pg.PoolClient,
): BulkWay[] {
  const q = quoteIdent(pgwake.schema);
  const jobs = (n: number) => Array.from({ length: n }, () => ({ task: pgwake.task, payload: {} }));
  const json = (n: number) => JSON.stringify(jobs(n));
  return [
    {
      system: "pgwake",
      variant: "enqueueMany",
      label: "pgwake enqueueMany (the library: full rows back)",
      adapter: pgwake,
      async insert(n) {
        const { client: timed, marks } = timedClient(pgwake.pool);
        const t0 = nowMs();
        await pgwake.pgwake.enqueueMany(jobs(n), { client: timed });
        const t1 = nowMs();
        return {
          total: t1 - t0,
          "client before the statement (checks, JSON)": marks.sent - t0,
          "statement round trip (server, transfer, row parsing)": marks.answered - marks.sent,
          "client after the statement (sort, job objects)": t1 - marks.answered,
        };
      },
    },
    {
      system: "pgwake",
      variant: "insert_jobs, count only",
      label: "SELECT count(*) FROM insert_jobs($1): the same statement, no rows back",
      adapter: pgwake,
      async insert(n) {
        const t0 = nowMs();
        const input = json(n);
        const t1 = nowMs();
        await client.query(`SELECT count(*) FROM ${q}.insert_jobs($1::jsonb)`, [input]);
        const t2 = nowMs();
        return { total: t2 - t0, "JSON.stringify": t1 - t0, statement: t2 - t1 };
      },
    },
    {
      system: "pgwake",
      variant: "prototype: arrays",
      label: "prototype: INSERT … SELECT FROM unnest($1::text[], $2::jsonb[]) RETURNING id",
      adapter: pgwake,
      async insert(n) {
        const t0 = nowMs();
        const tasks = Array.from({ length: n }, () => pgwake.task);
        const payloads = Array.from({ length: n }, () => "{}");
        await client.query(FROM_ARRAYS(q), [tasks, payloads]);
        return { total: nowMs() - t0 };
      },
    },
    {
      system: "pgwake",
      variant: "prototype: COPY",
      label: "prototype: COPY into a temporary staging table, then INSERT … SELECT RETURNING id",
      adapter: pgwake,
      async insert(n) {
        const t0 = nowMs();
        const line = `${copyText(pgwake.task)}\t${copyText("{}")}\n`;
        const data = Buffer.from(line.repeat(n));
        const t1 = nowMs();
        await client.query("BEGIN");
        try {
          await copyFrom(client, "COPY bench_staging (task, payload) FROM STDIN", data);
          const t2 = nowMs();
          await client.query(FROM_STAGING(q));
          await client.query("COMMIT");
          const t3 = nowMs();
          return {
            total: t3 - t0,
            "COPY text": t1 - t0,
            COPY: t2 - t1,
            "INSERT … SELECT": t3 - t2,
          };
        } catch (error) {
          await client.query("ROLLBACK");
          throw error;
        }
      },
    },
    {
      system: "graphile",
      variant: "addJobs",
      label: "graphile-worker addJobs",
      adapter: graphile,
      async insert(n) {
        const t0 = nowMs();
        await graphile.bulk(n, n);
        return { total: nowMs() - t0 };
      },
    },
  ];
}

/** EXPLAIN (ANALYZE, WAL) of insert_jobs over `n` jobs, rolled back: server time and WAL. */
async function explainInsert(
  client: pg.PoolClient,
  schema: string,
  task: string,
  n: number,
): Promise<string> {
  const input = JSON.stringify(Array.from({ length: n }, () => ({ task, payload: {} })));
  await client.query("BEGIN");
  try {
    const { rows } = await client.query<{ "QUERY PLAN": string }>(
      `EXPLAIN (ANALYZE, BUFFERS, WAL) SELECT * FROM ${quoteIdent(schema)}.insert_jobs($1::jsonb)`,
      [input],
    );
    return rows
      .map((r) => r["QUERY PLAN"])
      .filter((l) => /WAL:|Execution Time|Planning Time|Function Scan/.test(l))
      .map((l) => l.trim())
      .join("; ");
  } finally {
    await client.query("ROLLBACK");
  }
}

/**
 * Scenario `bulk`: where the time of a bulk enqueue goes, for each shape of `chunks` (jobs per
 * call): pgwake's enqueueMany split into its phases (client work before the statement, the
 * statement's round trip, client work after), the same statement returning no rows, two
 * prototypes of a cheaper path (arrays instead of JSON; COPY into a staging table) and
 * graphile-worker's addJobs — rounds interleaved, each measurement from an empty table, with
 * the WAL each way writes per job (pg_walinspect) and EXPLAIN (ANALYZE, WAL) of insert_jobs.
 */
export async function bulkScenario(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const { jobs, chunks } = ctx.settings.bulk;
  const meter = await WalMeter.open(ctx.admin, ctx.url);
  const pgwake = await createPgwake(ctx.url, "bulk");
  const graphile = await createGraphile(ctx.url, "bulk");
  const client = await pgwake.pool.connect();
  try {
    await client.query(
      "CREATE TEMPORARY TABLE bench_staging (n bigint GENERATED ALWAYS AS IDENTITY, task text, payload jsonb) ON COMMIT DELETE ROWS",
    );
    const all = ways(pgwake, graphile, client);
    const rates = chunks.map(() => all.map((): number[] => []));
    const phases = chunks.map(() => all.map((): Record<string, number[]> => ({})));
    const wal = chunks.map(() => all.map((): number[] => []));
    for (let rep = 0; rep <= reps; rep++) {
      const warmup = rep === 0;
      for (const [c, chunk] of chunks.entries()) {
        for (const [w, way] of all.entries()) {
          const n = warmup ? Math.min(chunk, 1_000) : chunk;
          const calls = warmup ? 1 : Math.ceil(jobs / chunk);
          ctx.progress.step(
            `bulk: ${way.variant}, ${calls} × ${n}, ${warmup ? "warm-up" : `round ${rep}/${reps}`}`,
          );
          await way.adapter.reset();
          await way.adapter.vacuum();
          const target =
            typeof meter === "string"
              ? undefined
              : await WalMeter.target(ctx.admin, [way.adapter.schema]);
          const from = typeof meter === "string" ? "" : await meter.position();
          const sums: Record<string, number> = {};
          for (let call = 0; call < calls; call++) {
            for (const [k, ms] of Object.entries(await way.insert(n)))
              sums[k] = (sums[k] ?? 0) + ms;
          }
          if (warmup) continue;
          rates[c]![w]!.push((calls * n) / (sums.total! / 1_000));
          for (const [k, ms] of Object.entries(sums)) {
            if (k === "total") continue;
            const list = phases[c]![w]![k] ?? [];
            phases[c]![w]![k] = list;
            list.push((ms / (calls * n)) * 1_000);
          }
          if (typeof meter !== "string" && target) {
            const usage: WalUsage = await meter.usage(from, await meter.position(), target);
            wal[c]![w]!.push(usage.bytes / (calls * n));
          }
        }
      }
    }
    for (const [c, chunk] of chunks.entries()) {
      const calls = Math.ceil(jobs / chunk);
      const shape = `${jobs.toLocaleString("en-US")} jobs, ${calls} call${calls > 1 ? "s" : ""} × ${chunk.toLocaleString("en-US")}`;
      for (const [w, way] of all.entries()) {
        const kase = `${shape}: ${way.label}`;
        const base = { scenario: "bulk", system: way.system, variant: way.variant, case: kase };
        ctx.results.push({
          ...base,
          metric: "throughput",
          unit: "jobs/s",
          better: "higher",
          summary: summarize(rates[c]![w]!),
          ...(way.variant === "enqueueMany" || way.system === "graphile"
            ? { compareKey: `bulk-${chunk}` }
            : {}),
        });
        for (const [phase, values] of Object.entries(phases[c]![w]!)) {
          ctx.results.push({
            ...base,
            metric: phase,
            unit: "ms/1,000 jobs",
            better: "lower",
            summary: summarize(values),
          });
        }
        if (wal[c]![w]!.length > 0) {
          ctx.results.push({
            ...base,
            metric: "WAL bytes per job",
            unit: "B/job",
            better: "lower",
            summary: summarize(wal[c]![w]!),
          });
        }
      }
      ctx.notes.push({
        scenario: "bulk",
        text: `EXPLAIN (ANALYZE, BUFFERS, WAL) of insert_jobs over ${chunk.toLocaleString("en-US")} jobs: ${await explainInsert(client, pgwake.schema, pgwake.task, chunk)}`,
      });
    }
    if (typeof meter === "string")
      ctx.notes.push({ scenario: "bulk", text: `no WAL figures: ${meter}` });
    const fmt = (c: number, w: number) => formatNumber(summarize(rates[c]![w]!).median);
    ctx.notes.push({
      scenario: "bulk",
      text: chunks
        .map(
          (chunk, c) =>
            `calls of ${chunk.toLocaleString("en-US")}: ${all.map((way, w) => `${way.variant} ${fmt(c, w)}/s`).join(", ")}`,
        )
        .join("\n"),
    });
  } finally {
    client.release();
    await pgwake.drop();
    await graphile.drop();
    if (typeof meter !== "string") await meter.close();
  }
}
