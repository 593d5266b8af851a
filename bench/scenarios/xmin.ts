import {
  GRAPHILE_DOCS,
  graphileVariant,
  PGWAKE_DEFAULTS,
  type WorkerVariant,
} from "../lib/configs.ts";
import type { BenchContext } from "../lib/context.ts";
import { createScratchDatabase, holdXmin } from "../lib/databases.ts";
import { formatNumber } from "../lib/format.ts";
import { summarize } from "../lib/stats.ts";
import { createGraphile, createPgwake, type SystemAdapter } from "../lib/systems.ts";
import { claimIndexStats, type DrainEntry, interleavedDrains } from "./drain.ts";

function held(variant: WorkerVariant): WorkerVariant {
  return { ...variant, variant: `${variant.variant}, xmin held`, label: `${variant.label}` };
}

/**
 * Scenario `xmin`: drain throughput while a transaction stays open in another database of the
 * same server (BEGIN; SELECT txid_current(); from before the backlog is inserted until the
 * workers exited) against the same drain without it, for pgwake's defaults and graphile-worker.
 * The open xid is in every snapshot of the server, so nothing deleted or updated during the
 * drain can be removed: not by vacuum, HOT pruning or index scans. Rounds interleave all four.
 * pgwake's ready-index entries read per job are reported for both.
 */
export async function xminScenario(ctx: BenchContext): Promise<void> {
  const { jobs } = ctx.settings.xmin;
  const scratch = await createScratchDatabase(ctx.admin, ctx.url, "xmin");
  const adapters: SystemAdapter[] = [];
  try {
    const pgwake = await createPgwake(ctx.url, "xmin_pgwake");
    adapters.push(pgwake);
    const graphile = await createGraphile(ctx.url, "xmin_graphile");
    adapters.push(graphile);
    const gw = graphileVariant(GRAPHILE_DOCS, "docs");
    const entries: DrainEntry[] = [
      { adapter: pgwake, variant: PGWAKE_DEFAULTS },
      { adapter: pgwake, variant: held(PGWAKE_DEFAULTS) },
      { adapter: graphile, variant: gw },
      { adapter: graphile, variant: held(gw) },
    ];
    const holds = [false, true, false, true];
    const readPerJob = entries.map((): number[] => []);
    let release: (() => Promise<void>) | undefined;
    let indexBefore = 0;
    const rates = await interleavedDrains(ctx, entries, {
      processes: 1,
      jobs,
      label: "held xmin",
      around: {
        beforeFill: async (_entry, i) => {
          if (holds[i]) release = (await holdXmin(scratch.url)).release;
        },
        beforeStart: async (entry) => {
          if (entry.adapter === pgwake)
            indexBefore = (await claimIndexStats(ctx.admin, pgwake.schema)).idxTupRead;
        },
        afterExit: async (entry, i, _run, n) => {
          if (entry.adapter === pgwake) {
            const after = (await claimIndexStats(ctx.admin, pgwake.schema)).idxTupRead;
            readPerJob[i]!.push((after - indexBefore) / n);
          }
          await release?.();
          release = undefined;
        },
      },
    });
    for (const [i, entry] of entries.entries()) {
      const kase = `drain ${jobs.toLocaleString("en-US")} jobs, 1 process, ${holds[i] ? "a transaction held open in another database" : "nothing held"} (${entry.variant.label})`;
      ctx.results.push({
        scenario: "xmin",
        system: entry.adapter.name,
        variant: entry.variant.variant,
        case: kase,
        metric: "throughput",
        unit: "jobs/s",
        better: "higher",
        summary: summarize(rates[i]!),
      });
      if (entry.adapter === pgwake) {
        ctx.results.push({
          scenario: "xmin",
          system: "pgwake",
          variant: entry.variant.variant,
          case: kase,
          metric: "ready-index entries read per job",
          unit: "rows/job",
          better: "lower",
          summary: summarize(readPerJob[i]!),
        });
      }
    }
    // Held over free within each round (adjacent drains, so the machine's load is alike).
    const share = (free: number, heldIndex: number) =>
      summarize(rates[heldIndex]!.map((r, k) => (100 * r) / rates[free]![k]!));
    const mine = share(0, 1);
    const theirs = share(2, 3);
    for (const [system, summary] of [
      ["pgwake", mine],
      ["graphile", theirs],
    ] as const) {
      ctx.results.push({
        scenario: "xmin",
        system,
        case: `drain ${jobs.toLocaleString("en-US")} jobs: held ÷ nothing held, per round`,
        metric: "share kept",
        unit: "%",
        better: "higher",
        summary,
        compareKey: "xmin-share",
      });
    }
    ctx.verdicts.push({
      issue: "#11",
      target: "drain with a transaction held open in another database ≥ 80 % of the drain without",
      measured: `pgwake defaults ${formatNumber(summarize(rates[1]!).median)} vs ${formatNumber(summarize(rates[0]!).median)} jobs/s, ${formatNumber(mine.median)} % per round [${formatNumber(mine.min)}–${formatNumber(mine.max)}] (graphile-worker ${formatNumber(theirs.median)} %)`,
      met: mine.median >= 80,
    });
  } finally {
    for (const adapter of adapters) await adapter.drop();
    await scratch.drop();
  }
}
