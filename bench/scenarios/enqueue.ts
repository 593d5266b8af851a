import pg from "pg";
import type { BenchContext, Result } from "../lib/context.ts";
import { callsPerSecond } from "../lib/load.ts";
import { nowMs, summarize } from "../lib/stats.ts";
import { createSystem, type SystemAdapter, type SystemName } from "../lib/systems.ts";

export interface EnqueueFigures {
  single: number[];
  bulk: number[];
  sql: number[];
}

/** One system's producer side in a fresh schema, for enqueue measurements. */
export interface EnqueueRig {
  adapter: SystemAdapter;
  /** The library's single enqueue, `inFlight` calls outstanding: jobs/s. */
  single(count: number): Promise<number>;
  /** The library's bulk insert, `chunk` jobs per call: jobs/s. */
  bulk(count: number, chunk: number): Promise<number>;
  /** The SQL function from `inFlight` connections, one job per call: jobs/s (NaN: none). */
  sql(count: number): Promise<number>;
  close(): Promise<void>;
}

/** Each measurement starts from an empty, vacuumed table, with no worker running. */
export async function openEnqueueRig(ctx: BenchContext, name: SystemName): Promise<EnqueueRig> {
  const { inFlight } = ctx.settings.enqueue;
  const adapter: SystemAdapter = await createSystem(name, ctx.url, "enqueue");
  const sqlPool = new pg.Pool({
    connectionString: ctx.url,
    max: inFlight,
    application_name: "bench-sql",
  });
  const fresh = async () => {
    await adapter.reset();
    await adapter.vacuum();
  };
  return {
    adapter,
    async single(count) {
      await fresh();
      return callsPerSecond(count, inFlight, () => adapter.single({}));
    },
    async bulk(count, chunk) {
      await fresh();
      const t0 = nowMs();
      await adapter.bulk(count, chunk);
      return count / ((nowMs() - t0) / 1_000);
    },
    async sql(count) {
      if (!adapter.sqlSingle) return Number.NaN;
      await fresh();
      const clients = await Promise.all(Array.from({ length: inFlight }, () => sqlPool.connect()));
      try {
        return await callsPerSecond(count, inFlight, (_, lane) =>
          adapter.sqlSingle!(clients[lane]!),
        );
      } finally {
        for (const c of clients) c.release();
      }
    },
    async close() {
      await sqlPool.end();
      await adapter.drop();
    },
  };
}

/**
 * Submission speed of one system with no worker running: the library's single enqueue with
 * `inFlight` calls outstanding, its bulk insert, and its SQL function from `inFlight`
 * connections. Each repetition starts from an empty, vacuumed table.
 */
export async function measureEnqueue(
  ctx: BenchContext,
  name: SystemName,
  sizes: { single: number; bulk: number; sql: number },
): Promise<EnqueueFigures> {
  const { reps } = ctx.settings;
  const { inFlight, bulkChunk } = ctx.settings.enqueue;
  const rig = await openEnqueueRig(ctx, name);
  const figures: EnqueueFigures = { single: [], bulk: [], sql: [] };
  try {
    for (let rep = 0; rep <= reps; rep++) {
      const warmup = rep === 0;
      const tag = warmup ? "warm-up" : `rep ${rep}/${reps}`;
      const scale = warmup ? 0.2 : 1;
      ctx.progress.step(`${name} single enqueue, ${inFlight} in flight, ${tag}`);
      const single = await rig.single(Math.round(sizes.single * scale));
      ctx.progress.step(`${name} bulk ${sizes.bulk.toLocaleString("en-US")}, ${tag}`);
      const bulk = await rig.bulk(Math.round(sizes.bulk * scale), bulkChunk);
      ctx.progress.step(`${name} SQL enqueue from ${inFlight} connections, ${tag}`);
      const sql = await rig.sql(Math.round(sizes.sql * scale));
      if (warmup) continue;
      figures.single.push(single);
      figures.bulk.push(bulk);
      if (Number.isFinite(sql)) figures.sql.push(sql);
    }
  } finally {
    await rig.close();
  }
  return figures;
}

export function enqueueResults(
  scenario: string,
  system: SystemName,
  figures: EnqueueFigures,
  sizes: { single: number; bulk: number; sql: number },
  inFlight: number,
  chunk: number,
): Result[] {
  const rows: Result[] = [
    {
      scenario,
      system,
      case: `single enqueue, ${inFlight} in flight, ${sizes.single.toLocaleString("en-US")} jobs`,
      metric: "throughput",
      unit: "jobs/s",
      better: "higher",
      summary: summarize(figures.single),
      compareKey: "enqueue-single",
    },
    {
      scenario,
      system,
      case: `bulk ${sizes.bulk.toLocaleString("en-US")} jobs in chunks of ${chunk.toLocaleString("en-US")}`,
      metric: "throughput",
      unit: "jobs/s",
      better: "higher",
      summary: summarize(figures.bulk),
      compareKey: "enqueue-bulk",
    },
  ];
  if (figures.sql.length > 0) {
    rows.push({
      scenario,
      system,
      case: `SQL function, ${inFlight} connections, ${sizes.sql.toLocaleString("en-US")} jobs`,
      metric: "throughput",
      unit: "jobs/s",
      better: "higher",
      summary: summarize(figures.sql),
      compareKey: "enqueue-sql",
    });
  }
  return rows;
}

/** Scenario 2: pgwake's submission speed (no worker running, so no wake-up is sent). */
export async function enqueueScenario(ctx: BenchContext): Promise<void> {
  const { single, bulk, sql, inFlight, bulkChunk } = ctx.settings.enqueue;
  const sizes = { single, bulk, sql };
  const figures = await measureEnqueue(ctx, "pgwake", sizes);
  ctx.results.push(...enqueueResults("enqueue", "pgwake", figures, sizes, inFlight, bulkChunk));
}
