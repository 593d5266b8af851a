import { graphileVariant, PGBOSS_DRAIN, PGWAKE_DEFAULTS, PGWAKE_TUNED } from "../lib/configs.ts";
import type { BenchContext, GraphileConfig, Result } from "../lib/context.ts";
import { formatNumber } from "../lib/format.ts";
import { times } from "../lib/report.ts";
import { summarize } from "../lib/stats.ts";
import {
  createGraphile,
  createPgBoss,
  createPgwake,
  SYSTEM_LABEL,
  type SystemAdapter,
  type SystemName,
} from "../lib/systems.ts";
import { type DrainEntry, interleavedDrains } from "./drain.ts";
import { type EnqueueRig, openEnqueueRig } from "./enqueue.ts";
import {
  addLatencySeries,
  emptyLatencyFigures,
  type LatencyRig,
  type LatencyVariant,
  latencyResults,
  openLatencyRig,
} from "./latency.ts";

/** Each system's documented low-latency worker settings. */
const LATENCY_VARIANTS: LatencyVariant[] = [
  { system: "pgwake", label: "pgwake defaults", child: { pgwakeDefaults: true } },
  // Without localQueue: graphile-worker's docs say the local queue trades latency for throughput.
  { system: "graphile", label: "graphile-worker, concurrency 24", child: { concurrency: 24 } },
  {
    system: "pgboss",
    label: "pg-boss, useListenNotify + queue notify",
    child: { notify: true, concurrency: 1, batchSize: 1, pollIntervalMs: 500 },
  },
];

/**
 * Scenario `peers`: drain, enqueue and latency of pgwake, graphile-worker (and pg-boss) on the
 * same server in the same run, each in its own fresh schema. pgwake runs with its defaults and
 * tuned; graphile-worker with the best of a few configurations (its documented performance
 * settings and larger ones) found by a calibration step. Rounds of the systems are interleaved.
 */
export async function peersScenario(ctx: BenchContext): Promise<void> {
  await peerDrains(ctx);
  await peerEnqueue(ctx);
  await peerLatency(ctx);
}

/** pg-boss only where the settings ask for it (it doubles the drain rounds' time). */
function systems(ctx: BenchContext): SystemName[] {
  return ctx.settings.peers.pgboss ? ["pgwake", "graphile", "pgboss"] : ["pgwake", "graphile"];
}

function processesLabel(processes: number): string {
  return `${processes} process${processes > 1 ? "es" : ""}`;
}

/**
 * graphile-worker's best configuration on this machine: each candidate drains
 * `calibrationJobs` jobs `calibrationRuns` times on one process (rounds interleaved, after a
 * warm-up); the highest median wins. Every candidate's figure is reported.
 */
async function calibrateGraphile(
  ctx: BenchContext,
  adapter: SystemAdapter,
): Promise<GraphileConfig> {
  const { graphileCandidates, calibrationJobs, calibrationRuns } = ctx.settings.peers;
  if (graphileCandidates.length === 1) return graphileCandidates[0]!;
  const entries = graphileCandidates.map((config) => ({
    adapter,
    variant: graphileVariant(config, `candidate ${config.concurrency}/${config.localQueueSize}`),
  }));
  const rates = await interleavedDrains(
    { ...ctx, settings: { ...ctx.settings, reps: calibrationRuns } },
    entries,
    { processes: 1, jobs: calibrationJobs, label: "graphile-worker calibration" },
  );
  let best = 0;
  for (const [i, entry] of entries.entries()) {
    ctx.results.push({
      scenario: "peers",
      system: "graphile",
      variant: "calibration",
      case: `calibration: drain ${calibrationJobs.toLocaleString("en-US")} jobs, 1 process, ${entry.variant.label}`,
      metric: "throughput",
      unit: "jobs/s",
      better: "higher",
      summary: summarize(rates[i]!),
    });
    if (summarize(rates[i]!).median > summarize(rates[best]!).median) best = i;
  }
  ctx.notes.push({
    scenario: "peers",
    text: `graphile-worker's best configuration here: ${entries[best]!.variant.label} (medians of ${calibrationRuns} drain(s) of ${calibrationJobs.toLocaleString("en-US")} jobs: ${entries
      .map((e, i) => `${e.variant.variant} ${formatNumber(summarize(rates[i]!).median)}/s`)
      .join(", ")})`,
  });
  return graphileCandidates[best]!;
}

async function peerDrains(ctx: BenchContext): Promise<void> {
  const peers = ctx.settings.peers;
  const adapters: Partial<Record<SystemName, SystemAdapter>> = {};
  try {
    adapters.pgwake = await createPgwake(ctx.url, "peer_pgwake");
    adapters.graphile = await createGraphile(ctx.url, "peer_graphile");
    if (peers.pgboss) adapters.pgboss = await createPgBoss(ctx.url, "peer_pgboss");
    const best = await calibrateGraphile(ctx, adapters.graphile);
    const graphileBest = graphileVariant(best);
    for (const processes of peers.procs) {
      const entries: DrainEntry[] = [
        { adapter: adapters.pgwake, variant: PGWAKE_DEFAULTS },
        { adapter: adapters.pgwake, variant: PGWAKE_TUNED },
        { adapter: adapters.graphile, variant: graphileBest },
        ...(adapters.pgboss ? [{ adapter: adapters.pgboss, variant: PGBOSS_DRAIN }] : []),
      ];
      const rates = await interleavedDrains(ctx, entries, {
        processes,
        jobs: peers.drainJobs,
        label: `drain, ${processesLabel(processes)}`,
      });
      const medians = entries.map((e, i) => {
        const summary = summarize(rates[i]!);
        ctx.results.push({
          scenario: "peers",
          system: e.adapter.name,
          variant: e.variant.variant,
          case: `drain ${peers.drainJobs.toLocaleString("en-US")} jobs, ${processesLabel(processes)} (${e.variant.label})`,
          metric: "throughput",
          unit: "jobs/s",
          better: "higher",
          summary,
          compareKey: `drain-${processes}p`,
        });
        return summary.median;
      });
      const [defaults, tuned, graphile] = medians as [number, number, number];
      const vs = (mine: number) =>
        `${formatNumber(mine)} vs ${formatNumber(graphile)} jobs/s = ${times(mine / graphile)}`;
      if (processes === 1) {
        ctx.verdicts.push(
          {
            issue: "#11",
            target: "drain, 1 process, pgwake defaults ≥ 1.5× graphile-worker's best",
            measured: vs(defaults),
            met: defaults / graphile >= 1.5,
          },
          {
            issue: "#11",
            target: "drain, 1 process, pgwake tuned ≥ 2× graphile-worker's best",
            measured: vs(tuned),
            met: tuned / graphile >= 2,
          },
        );
      } else {
        ctx.verdicts.push({
          issue: "#11",
          target: `drain, ${processesLabel(processes)}, pgwake tuned ≥ 1.5× graphile-worker's best`,
          measured: `${vs(tuned)} (defaults: ${times(defaults / graphile)})`,
          met: tuned / graphile >= 1.5,
        });
      }
    }
  } finally {
    for (const adapter of Object.values(adapters)) await adapter.drop();
  }
}

/**
 * Single, bulk (each shape of `bulkChunks`) and SQL-function enqueue of every system, rounds
 * interleaved: each round measures every system once, after a warm-up round at a fifth of the
 * sizes.
 */
async function peerEnqueue(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const { inFlight } = ctx.settings.enqueue;
  const { single, bulk, bulkChunks } = ctx.settings.peers;
  const names = systems(ctx);
  const rigs: EnqueueRig[] = [];
  type Figures = { single: number[]; sql: number[]; bulk: number[][] };
  const figures = new Map<SystemName, Figures>();
  try {
    for (const name of names) {
      rigs.push(await openEnqueueRig(ctx, name));
      figures.set(name, { single: [], sql: [], bulk: bulkChunks.map(() => []) });
    }
    for (let rep = 0; rep <= reps; rep++) {
      const warmup = rep === 0;
      const scale = warmup ? 0.2 : 1;
      const tag = warmup ? "warm-up" : `round ${rep}/${reps}`;
      for (const rig of rigs) {
        const mine = figures.get(rig.adapter.name)!;
        const label = SYSTEM_LABEL[rig.adapter.name];
        ctx.progress.step(`enqueue: ${label} single, ${inFlight} in flight, ${tag}`);
        const s = await rig.single(Math.round(single * scale));
        const b: number[] = [];
        for (const chunk of bulkChunks) {
          ctx.progress.step(`enqueue: ${label} bulk in calls of ${chunk}, ${tag}`);
          b.push(await rig.bulk(Math.round(bulk * scale), Math.round(chunk * scale)));
        }
        ctx.progress.step(`enqueue: ${label} SQL function, ${tag}`);
        const q = await rig.sql(Math.round(single * scale));
        if (warmup) continue;
        mine.single.push(s);
        for (const [i, rate] of b.entries()) mine.bulk[i]!.push(rate);
        if (Number.isFinite(q)) mine.sql.push(q);
      }
    }
  } finally {
    for (const rig of rigs) await rig.close();
  }
  const row = (system: SystemName, kase: string, values: number[], compareKey: string): Result => ({
    scenario: "peers",
    system,
    case: kase,
    metric: "throughput",
    unit: "jobs/s",
    better: "higher",
    summary: summarize(values),
    compareKey,
  });
  for (const [system, f] of figures) {
    ctx.results.push(
      row(
        system,
        `single enqueue, ${inFlight} in flight, ${single.toLocaleString("en-US")} jobs`,
        f.single,
        "enqueue-single",
      ),
    );
    for (const [i, chunk] of bulkChunks.entries()) {
      const calls = Math.ceil(bulk / chunk);
      ctx.results.push(
        row(
          system,
          `bulk ${bulk.toLocaleString("en-US")} jobs, ${calls} call${calls > 1 ? "s" : ""} × ${chunk.toLocaleString("en-US")}${system === "pgwake" ? " (enqueueMany)" : system === "graphile" ? " (addJobs)" : " (insert)"}`,
          f.bulk[i]!,
          `enqueue-bulk-${chunk}`,
        ),
      );
    }
    if (f.sql.length > 0) {
      ctx.results.push(
        row(
          system,
          `SQL function, ${inFlight} connections, ${single.toLocaleString("en-US")} jobs`,
          f.sql,
          "enqueue-sql",
        ),
      );
    }
  }
  const mine = figures.get("pgwake")!;
  const theirs = figures.get("graphile")!;
  for (const [i, chunk] of bulkChunks.entries()) {
    const a = summarize(mine.bulk[i]!).median;
    const b = summarize(theirs.bulk[i]!).median;
    const calls = Math.ceil(bulk / chunk);
    ctx.verdicts.push({
      issue: "#11",
      target: `bulk enqueue (${calls} call${calls > 1 ? "s" : ""} × ${chunk.toLocaleString("en-US")}) ≥ 2× graphile-worker's addJobs`,
      measured: `${formatNumber(a)} vs ${formatNumber(b)} jobs/s = ${times(a / b)}`,
      met: a / b >= 2,
    });
  }
}

/** Wake latency of every system, one idle worker each, series interleaved. */
async function peerLatency(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const { latencyJobs } = ctx.settings.peers;
  const variants = LATENCY_VARIANTS.filter((v) => systems(ctx).includes(v.system));
  const rigs: LatencyRig[] = [];
  const figures = variants.map(() => emptyLatencyFigures());
  try {
    for (const variant of variants) rigs.push(await openLatencyRig(ctx, variant));
    for (let rep = 0; rep <= reps; rep++) {
      const warmup = rep === 0;
      const count = warmup ? Math.min(50, latencyJobs) : latencyJobs;
      for (const [i, rig] of rigs.entries()) {
        ctx.progress.step(
          `latency: ${rig.variant.label}, ${count} jobs, ${warmup ? "warm-up" : `round ${rep}/${reps}`}`,
        );
        const latencies = await rig.series(count);
        if (!warmup) addLatencySeries(figures[i]!, latencies, ctx.settings.latency.missedAfterMs);
      }
    }
  } finally {
    for (const rig of rigs) await rig.close();
  }
  for (const [i, variant] of variants.entries()) {
    ctx.results.push(...latencyResults("peers", variant, figures[i]!, latencyJobs, ctx, true));
  }
  const mine = summarize(figures[0]!.p50).median;
  const theirs = summarize(figures[1]!.p50).median;
  ctx.verdicts.push({
    issue: "#11",
    target: "wake latency p50 ≤ 0.5× graphile-worker's (same run)",
    measured: `${formatNumber(mine)} vs ${formatNumber(theirs)} ms = ${times(mine / theirs)} of graphile-worker's`,
    met: mine <= 0.5 * theirs,
  });
}
