import { GRAPHILE_DOCS, graphileVariant, PGWAKE_DEFAULTS, PGWAKE_TUNED } from "../lib/configs.ts";
import type { BenchContext } from "../lib/context.ts";
import { formatNumber } from "../lib/format.ts";
import { times } from "../lib/report.ts";
import { summarize } from "../lib/stats.ts";
import { createGraphile, createPgwake, type SystemAdapter } from "../lib/systems.ts";
import { WalMeter, type WalUsage } from "../lib/wal.ts";
import { type DrainEntry, interleavedDrains } from "./drain.ts";

/**
 * Scenario `wal`: WAL written per drained job, pgwake (defaults, tuned) and graphile-worker (its
 * documented performance settings), rounds interleaved. Each round: empty tables, CHECKPOINT,
 * insert the backlog, VACUUM ANALYZE, then measure from the start signal until the workers
 * exited. Records are read back with pg_walinspect and attributed to the system's own relations
 * (and the commit records of the transactions that wrote them), so other databases writing on
 * the same server do not count; the server-wide byte count is printed beside. The CHECKPOINT
 * before the insert means the drain's pages are all newer than the last checkpoint: the figures
 * are the WAL each job costs by itself, without full-page images (which a checkpoint during a
 * drain adds to both systems, per page touched).
 */
export async function walScenario(ctx: BenchContext): Promise<void> {
  const meter = await WalMeter.open(ctx.admin, ctx.url);
  if (typeof meter === "string") {
    ctx.notes.push({ scenario: "wal", text: `skipped: ${meter}` });
    ctx.verdicts.push({
      issue: "#11",
      target: "WAL bytes per drained job ≤ graphile-worker's",
      measured: meter,
      met: null,
    });
    return;
  }
  const adapters: SystemAdapter[] = [];
  try {
    const pgwake = await createPgwake(ctx.url, "wal_pgwake");
    adapters.push(pgwake);
    const graphile = await createGraphile(ctx.url, "wal_graphile");
    adapters.push(graphile);
    const entries: DrainEntry[] = [
      { adapter: pgwake, variant: PGWAKE_DEFAULTS },
      { adapter: pgwake, variant: PGWAKE_TUNED },
      { adapter: graphile, variant: graphileVariant(GRAPHILE_DOCS, "docs") },
    ];
    const usages = entries.map((): { usage: WalUsage; jobs: number }[] => []);
    let from = "";
    let target = { db: 0, nodes: [] as number[] };
    const { jobs } = ctx.settings.wal;
    await interleavedDrains(ctx, entries, {
      processes: 1,
      jobs,
      label: "WAL per job",
      around: {
        beforeFill: async () => {
          await ctx.admin.query("CHECKPOINT");
        },
        beforeStart: async (entry) => {
          target = await WalMeter.target(ctx.admin, [entry.adapter.schema]);
          from = await meter.position();
        },
        afterExit: async (_entry, i, _run, n) => {
          const to = await meter.position();
          usages[i]!.push({ usage: await meter.usage(from, to, target), jobs: n });
        },
      },
    });
    const perJob = (i: number, pick: (u: WalUsage) => number) =>
      summarize(usages[i]!.map(({ usage, jobs: n }) => pick(usage) / n));
    for (const [i, entry] of entries.entries()) {
      const kase = `drain ${jobs.toLocaleString("en-US")} jobs, 1 process (${entry.variant.label})`;
      const row = (metric: string, unit: string, pick: (u: WalUsage) => number, key?: string) =>
        ctx.results.push({
          scenario: "wal",
          system: entry.adapter.name,
          variant: entry.variant.variant,
          case: kase,
          metric,
          unit,
          better: "lower",
          summary: perJob(i, pick),
          ...(key ? { compareKey: key } : {}),
        });
      row("WAL bytes per job", "B/job", (u) => u.bytes, "wal-bytes");
      row("WAL records per job", "records/job", (u) => u.records, "wal-records");
      row("full-page image bytes per job", "B/job", (u) => u.fpiBytes);
      row("server-wide WAL bytes per job (all writers)", "B/job", (u) => u.serverBytes);
      const last = usages[i]!.at(-1);
      if (last) {
        const managers = Object.entries(last.usage.byManager)
          .sort((a, b) => b[1].bytes - a[1].bytes)
          .map(
            ([rm, v]) =>
              `${rm} ${formatNumber(v.records / last.jobs)} records ${formatNumber(v.bytes / last.jobs)} B`,
          )
          .join(", ");
        ctx.notes.push({
          scenario: "wal",
          text: `${entry.adapter.name} ${entry.variant.variant}, WAL per job by record type (last round): ${managers}`,
        });
      }
    }
    const mine = perJob(0, (u) => u.bytes).median;
    const theirs = perJob(2, (u) => u.bytes).median;
    const mineRecords = perJob(0, (u) => u.records).median;
    const theirRecords = perJob(2, (u) => u.records).median;
    ctx.verdicts.push({
      issue: "#11",
      target: "WAL bytes per drained job ≤ graphile-worker's (pgwake defaults)",
      measured: `${formatNumber(mine)} vs ${formatNumber(theirs)} B/job = ${times(mine / theirs)}; records ${formatNumber(mineRecords)} vs ${formatNumber(theirRecords)} per job`,
      met: mine <= theirs,
    });
  } finally {
    for (const adapter of adapters) await adapter.drop();
    await meter.close();
  }
}
