import { exitAll, spawnChildren } from "../lib/child.ts";
import type { BenchContext } from "../lib/context.ts";
import { summarize } from "../lib/stats.ts";
import { createSystem, SYSTEM_LABEL, type SystemName } from "../lib/systems.ts";
import { drainChildConfig, drainOnce } from "./drain.ts";
import { enqueueResults, measureEnqueue } from "./enqueue.ts";
import { type LatencyVariant, latencyResults, measureLatency } from "./latency.ts";

const SYSTEMS: SystemName[] = ["pgwake", "graphile", "pgboss"];

/** Each system's documented low-latency worker settings. */
const LATENCY_VARIANTS: LatencyVariant[] = [
  { system: "pgwake", label: "pgwake, NOTIFY on", child: { notify: true } },
  // Without localQueue: graphile-worker's docs say the local queue trades latency for throughput.
  { system: "graphile", label: "graphile-worker, concurrency 32", child: { concurrency: 32 } },
  {
    system: "pgboss",
    label: "pg-boss, useListenNotify + queue notify",
    child: { notify: true, concurrency: 1, batchSize: 1, pollIntervalMs: 500 },
  },
];

/**
 * Scenario 6: drain, enqueue and latency of pgwake, graphile-worker and pg-boss, on the same
 * server in the same run, each in its own fresh schema with its documented best settings.
 */
export async function peersScenario(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const peers = ctx.settings.peers;
  for (const processes of peers.procs) {
    for (const name of SYSTEMS) {
      const adapter = await createSystem(name, ctx.url, `peer_${name}`);
      const rates: number[] = [];
      try {
        const config = drainChildConfig(adapter, ctx.url, ctx.settings.drain.concurrency);
        for (let rep = 0; rep <= reps; rep++) {
          ctx.progress.step(
            `drain ${SYSTEM_LABEL[name]}, ${processes} process(es), ${rep === 0 ? "warm-up" : `rep ${rep}/${reps}`}`,
          );
          const children = await spawnChildren(processes, config);
          try {
            const jobs = rep === 0 ? Math.min(2_000, peers.drainJobs) : peers.drainJobs;
            const run = await drainOnce(adapter, children, jobs, 10_000);
            if (rep > 0) rates.push(run.jobsPerSecond);
          } finally {
            await exitAll(children);
          }
        }
        const settings =
          name === "pgwake"
            ? `concurrency ${config.concurrency}`
            : name === "graphile"
              ? `concurrency ${config.concurrency}, localQueue ${config.localQueueSize}, completeJobBatchDelay 0`
              : `${config.concurrency} workers × batchSize ${config.batchSize}`;
        ctx.results.push({
          scenario: "peers",
          system: name,
          case: `drain ${peers.drainJobs.toLocaleString("en-US")} jobs, ${processes} process${processes > 1 ? "es" : ""} (${settings})`,
          metric: "throughput",
          unit: "jobs/s",
          better: "higher",
          summary: summarize(rates),
          compareKey: `drain-${processes}p`,
        });
      } finally {
        await adapter.drop();
      }
    }
  }
  const sizes = { single: peers.single, bulk: peers.bulk, sql: peers.single };
  for (const name of SYSTEMS) {
    const figures = await measureEnqueue(ctx, name, sizes);
    ctx.results.push(
      ...enqueueResults(
        "peers",
        name,
        figures,
        sizes,
        ctx.settings.enqueue.inFlight,
        ctx.settings.enqueue.bulkChunk,
      ),
    );
  }
  for (const variant of LATENCY_VARIANTS) {
    const figures = await measureLatency(ctx, variant, peers.latencyJobs);
    ctx.results.push(...latencyResults("peers", variant, figures, peers.latencyJobs, ctx, true));
  }
}
