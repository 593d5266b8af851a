/**
 * What flow control costs (issue 12), in two parts:
 *
 * (a) Drain with a per-key limit: N no-op jobs spread over 1,000 concurrency keys are drained by
 *     worker processes from a queue limited to 4 running jobs per key, and the same backlog from a
 *     queue with no limit, in the same run, interleaved (the order rotates every round), at least
 *     3 rounds after a warm-up. Printed: jobs/s of each (median [min–max]) and the ratio limited /
 *     unlimited per round (target ≥ 80 %), beside graphile-worker's drain of the same backlog in
 *     the same rounds (graphile-worker has no per-key limit: its figure is an unlimited drain).
 * (b) A rate limit's accuracy: 200 starts/s (default bucket) for 60 s with 2 worker processes and a
 *     backlog larger than the period needs: starts per second (from the handlers' start times,
 *     and from the engine's claim times) min / max / mean, total against the expected number.
 *
 *   node bench/scenarios/flow.ts [--quick] [--drain | --rate]   (DATABASE_URL, or an embedded Postgres)
 *
 * or as the `flow` scenario of bench/run.ts (`flowScenario`). Quick: 10,000 jobs, 10 s of rate.
 */
import { fileURLToPath } from "node:url";
import { type BenchChild, exitAll, spawnChildren } from "../lib/child.ts";
import { type BenchContext, type Mode, type Result, SETTINGS } from "../lib/context.ts";
import { Progress } from "../lib/progress.ts";
import { sleep, summarize, until } from "../lib/stats.ts";
import {
  adminPool,
  createGraphile,
  createPgwake,
  dbNowMs,
  type SystemAdapter,
} from "../lib/systems.ts";
import { drainChildConfig } from "./drain.ts";

/** Sizes of the scenario per mode. */
export const FLOW_SETTINGS: Record<Mode, FlowSettings> = {
  quick: {
    jobs: 10_000,
    keys: 1_000,
    keyConcurrency: 4,
    rounds: 3,
    processes: 2,
    rate: 200,
    rateSeconds: 10,
  },
  default: {
    jobs: 50_000,
    keys: 1_000,
    keyConcurrency: 4,
    rounds: 3,
    processes: 2,
    rate: 200,
    rateSeconds: 60,
  },
  full: {
    jobs: 50_000,
    keys: 1_000,
    keyConcurrency: 4,
    rounds: 5,
    processes: 2,
    rate: 200,
    rateSeconds: 60,
  },
};

export interface FlowSettings {
  jobs: number;
  keys: number;
  keyConcurrency: number;
  /** Measured rounds, after a warm-up round. */
  rounds: number;
  /** Worker processes per system (each with the drain scenario's settings). */
  processes: number;
  /** Starts per second of the rate part, and how long it runs. */
  rate: number;
  rateSeconds: number;
}

const CHUNK = 10_000;
const WARMUP_JOBS = 5_000;

interface Drainer {
  label: string;
  system: "pgwake" | "graphile";
  adapter: SystemAdapter;
  children: BenchChild[];
  rates: number[];
  drop: () => Promise<void>;
}

/** A pgwake schema whose backlog spreads over `keys` concurrency keys (limited or not). */
async function keyedPgwake(ctx: BenchContext, prefix: string, s: FlowSettings, limited: boolean) {
  const adapter = await createPgwake(ctx.url, prefix);
  if (limited) {
    await adapter.pgwake.setQueueLimits(adapter.queue, { keyConcurrency: s.keyConcurrency });
  }
  const keyed: SystemAdapter = {
    ...adapter,
    // The same jobs in both schemas: the keys cost the unlimited queue nothing but their column.
    async bulk(count, chunk) {
      for (let done = 0; done < count; done += chunk) {
        const n = Math.min(chunk, count - done);
        await adapter.pgwake.enqueueMany(
          Array.from({ length: n }, (_, i) => ({
            task: adapter.task,
            payload: {},
            concurrencyKey: `k${(done + i) % s.keys}`,
          })),
        );
      }
    },
  };
  return { adapter: keyed, pgwake: adapter.pgwake, drop: () => adapter.drop() };
}

/**
 * One drain, as drain.ts's `drainOnce` (empty the table, bulk-insert, VACUUM ANALYZE, signal the
 * processes, time on the database clock until no job is left), without its time limits: the
 * limited drain runs at a small fraction of the others here, and its last outcomes are written
 * long after its last handler ran (completions wait for the queue's row behind claims).
 */
async function drainUntilEmpty(
  adapter: SystemAdapter,
  children: readonly BenchChild[],
  jobs: number,
): Promise<number> {
  await adapter.reset();
  await adapter.bulk(jobs, CHUNK);
  await adapter.vacuum();
  await Promise.all(children.map((c) => c.request({ type: "prepare" }, "prepared")));
  const startedAt = (await adapter.remaining()).at;
  await Promise.all(children.map((c) => c.request({ type: "start" }, "started")));
  const finishedAt = await until(
    "the database to show every job finished",
    async () => {
      const { remaining, at } = await adapter.remaining();
      return remaining === 0 ? at : undefined;
    },
    { timeoutMs: Math.max(300_000, jobs * 10), everyMs: 5 },
  ).catch(async (error: Error) => {
    const { remaining } = await adapter.remaining();
    throw new Error(`${error.message} (${remaining} of ${jobs} jobs left)`, { cause: error });
  });
  await Promise.all(children.map((c) => c.request({ type: "stop" }, "stopped", 120_000)));
  return jobs / ((finishedAt - startedAt) / 1_000);
}

/** Part (a): the limited drain against the unlimited one (and graphile-worker's), interleaved. */
async function drainWithKeyLimit(ctx: BenchContext, s: FlowSettings): Promise<void> {
  const drainers: Drainer[] = [];
  try {
    const free = await keyedPgwake(ctx, "flow_free", s, false);
    const limited = await keyedPgwake(ctx, "flow_keyed", s, true);
    const graphile = await createGraphile(ctx.url, "flow_gw");
    for (const [label, system, adapter, drop] of [
      ["pgwake, no limit", "pgwake", free.adapter, free.drop],
      [`pgwake, ${s.keyConcurrency} per key`, "pgwake", limited.adapter, limited.drop],
      ["graphile-worker (no per-key limit)", "graphile", graphile, () => graphile.drop()],
    ] as const) {
      ctx.progress.step(`starting ${s.processes} worker processes: ${label}`);
      const children = await spawnChildren(s.processes, drainChildConfig(adapter, ctx.url));
      drainers.push({ label, system, adapter, children, rates: [], drop });
    }

    const ratios: number[] = [];
    for (let round = 0; round <= s.rounds; round++) {
      const warmup = round === 0;
      const jobs = warmup ? Math.min(WARMUP_JOBS, s.jobs) : s.jobs;
      // Rotate the order, so no system always drains right after the same one.
      const order = drainers.map((_, i) => drainers[(i + round) % drainers.length]!);
      const thisRound = new Map<Drainer, number>();
      for (const d of order) {
        ctx.progress.step(
          `${warmup ? "warm-up" : `round ${round}/${s.rounds}`}: ${d.label}, ${jobs.toLocaleString("en-US")} jobs`,
        );
        thisRound.set(d, await drainUntilEmpty(d.adapter, d.children, jobs));
      }
      if (warmup) continue;
      for (const [d, rate] of thisRound) d.rates.push(rate);
      ratios.push(thisRound.get(drainers[1]!)! / thisRound.get(drainers[0]!)!);
    }

    const kase = `${s.jobs.toLocaleString("en-US")} jobs over ${s.keys.toLocaleString("en-US")} keys, ${s.processes} processes`;
    for (const d of drainers) {
      ctx.results.push({
        scenario: "flow",
        system: d.system,
        case: `${kase}: ${d.label}`,
        metric: "drain throughput",
        unit: "jobs/s",
        better: "higher",
        summary: summarize(d.rates),
      });
    }
    ctx.results.push({
      scenario: "flow",
      system: "pgwake",
      case: `${kase}: ${s.keyConcurrency} per key / no limit, same round`,
      metric: "throughput ratio (target ≥ 0.80)",
      unit: "×",
      better: "higher",
      summary: summarize(ratios),
    });
    // The limit held across the drains: no key is left counting a slot.
    const leaked = await limited.pgwake.queueKeys(limited.adapter.queue, { limit: 1 });
    ctx.notes.push({
      scenario: "flow",
      text:
        `per-key drain, per round (jobs/s): ${drainers.map((d) => `${d.label}: ${d.rates.map((r) => Math.round(r)).join(", ")}`).join("; ")}; ` +
        `ratios ${ratios.map((r) => r.toFixed(2)).join(", ")}. graphile-worker has no per-key limit: its figure is its unlimited drain of the same backlog, in the same rounds. ` +
        `Slots still counted after the drains: ${leaked[0]?.running ?? 0}.`,
    });
  } finally {
    for (const d of drainers) await exitAll(d.children);
    // A failure to drop a schema must not hide the error that got us here.
    for (const d of drainers) {
      await d.drop().catch((error: Error) =>
        ctx.notes.push({
          scenario: "flow",
          text: `could not drop ${d.adapter.schema}: ${error.message}`,
        }),
      );
    }
  }
}

/** Part (b): starts per second under a rate limit, over `rateSeconds`. */
async function rateAccuracy(ctx: BenchContext, s: FlowSettings): Promise<void> {
  const adapter = await createPgwake(ctx.url, "flow_rate");
  let children: BenchChild[] = [];
  try {
    const flow = await adapter.pgwake.setQueueLimits(adapter.queue, { rateLimit: s.rate });
    // The bucket starts full: its size is the burst (default or set).
    const bucket = flow.tokens ?? 1;
    const backlog = Math.ceil(s.rate * s.rateSeconds * 1.2) + 1_000;
    ctx.progress.step(`rate ${s.rate}/s: ${backlog.toLocaleString("en-US")} jobs`);
    for (let done = 0; done < backlog; done += CHUNK) {
      const n = Math.min(CHUNK, backlog - done);
      await adapter.pgwake.enqueueMany(
        Array.from({ length: n }, (_, i) => ({ task: adapter.task, payload: { i: done + i } })),
      );
    }
    await adapter.vacuum();
    children = await spawnChildren(s.processes, {
      ...drainChildConfig(adapter, ctx.url),
      recordStarts: true,
    });
    await Promise.all(children.map((c) => c.request({ type: "prepare" }, "prepared")));
    await Promise.all(children.map((c) => c.request({ type: "start" }, "started")));
    ctx.progress.step(`rate ${s.rate}/s: ${s.rateSeconds} s of starts`);
    const first = await until(
      "the first start",
      async () => {
        const { rows } = await adapter.pool.query<{ t: number | null }>(
          `SELECT extract(epoch FROM min(started_at))::float8 * 1000 AS t FROM ${adapter.jobTable}`,
        );
        return rows[0]?.t ?? undefined;
      },
      { timeoutMs: 30_000, everyMs: 20 },
    );
    const end = first + s.rateSeconds * 1_000;
    while ((await dbNowMs(adapter.pool)) < end + 500) await sleep(100);
    const stopped = await Promise.all(children.map((c) => c.request({ type: "stop" }, "stopped")));

    // Handler starts (each child's wall clock, the same host's) and claims (the database's
    // started_at), per second from the first claim.
    const handlerStarts = stopped.flatMap((m) => m.starts.map(([, at]) => at));
    const { rows } = await adapter.pool.query<{ t: number }>(
      `SELECT extract(epoch FROM started_at)::float8 * 1000 AS t FROM ${adapter.jobTable} WHERE started_at IS NOT NULL
       UNION ALL SELECT extract(epoch FROM started_at)::float8 * 1000 FROM "${adapter.schema}".job_history`,
    );
    const claims = rows.map((r) => r.t);
    const perSecond = (times: number[], origin: number) => {
      const buckets = new Array<number>(s.rateSeconds).fill(0);
      for (const t of times) {
        const second = Math.floor((t - origin) / 1_000);
        if (second >= 0 && second < s.rateSeconds) buckets[second]!++;
      }
      return buckets;
    };
    const byClaim = perSecond(claims, first);
    const byHandler = perSecond(handlerStarts, Math.min(...handlerStarts));
    const expected = s.rate * s.rateSeconds;
    const total = byClaim.reduce((a, b) => a + b, 0);
    const kase = `${s.rate}/s for ${s.rateSeconds} s, bucket ${bucket}, ${s.processes} processes`;
    const push = (metric: string, unit: string, value: number, better: Result["better"]) =>
      ctx.results.push({
        scenario: "flow",
        system: "pgwake",
        case: kase,
        metric,
        unit,
        better,
        summary: summarize([value]),
      });
    push("starts in the period (claims)", "jobs", total, "higher");
    push("of the expected starts", "%", (100 * total) / expected, "higher");
    push("busiest second (claims)", "starts", Math.max(...byClaim), "lower");
    push("quietest second (claims)", "starts", Math.min(...byClaim), "higher");
    push("busiest second (handler starts)", "starts", Math.max(...byHandler), "lower");
    push("quietest second (handler starts)", "starts", Math.min(...byHandler), "higher");
    ctx.notes.push({
      scenario: "flow",
      text:
        `rate ${s.rate}/s over ${s.rateSeconds} s: ${total} claims, expected ${expected} (+ the bucket's ${bucket}); ` +
        `per second (claims) min ${Math.min(...byClaim)} max ${Math.max(...byClaim)} mean ${(total / s.rateSeconds).toFixed(1)}; ` +
        `(handler starts) min ${Math.min(...byHandler)} max ${Math.max(...byHandler)}. Claims per second: ${byClaim.join(" ")}`,
    });
  } finally {
    await exitAll(children);
    await adapter.drop().catch((error: Error) =>
      ctx.notes.push({
        scenario: "flow",
        text: `could not drop ${adapter.schema}: ${error.message}`,
      }),
    );
  }
}

/** The `flow` scenario: (a) then (b); `parts` picks one of them. A part that fails is noted. */
export async function flowScenario(
  ctx: BenchContext,
  parts: readonly ("drain" | "rate")[] = ["drain", "rate"],
): Promise<void> {
  const s = FLOW_SETTINGS[ctx.mode];
  const failed: string[] = [];
  for (const [part, run] of [
    ["drain", drainWithKeyLimit],
    ["rate", rateAccuracy],
  ] as const) {
    if (!parts.includes(part)) continue;
    try {
      await run(ctx, s);
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      ctx.notes.push({ scenario: "flow", text: `FAILED (${part}): ${text}` });
      failed.push(part);
    }
  }
  if (failed.length > 0) throw new Error(`flow: ${failed.join(" and ")} failed (see the notes)`);
}

async function main(): Promise<void> {
  const mode: Mode = process.argv.includes("--quick") ? "quick" : "default";
  const only = process.argv.find((arg) => arg === "--drain" || arg === "--rate")?.slice(2) as
    | "drain"
    | "rate"
    | undefined;
  let url = process.env.DATABASE_URL;
  let stop = async () => {};
  if (!url) {
    const { findTestPostgres } = await import("../../test/helpers/postgres.ts");
    const found = await findTestPostgres();
    url = found.url;
    stop = found.stop;
  }
  const admin = adminPool(url);
  // What this scenario reads of a context; run.ts adds what the others need (hence the cast).
  const ctx = {
    url,
    mode,
    settings: structuredClone(SETTINGS[mode]),
    admin,
    progress: new Progress(1),
    results: [],
    notes: [],
    statStatements: false,
    verdicts: [],
  } as unknown as BenchContext;
  const started = Date.now();
  try {
    ctx.progress.scenario("flow");
    await flowScenario(ctx, only ? [only] : undefined).catch((error: Error) => {
      process.exitCode = 1;
      ctx.progress.note(error.message);
    });
  } finally {
    await admin.end();
    await stop();
  }
  ctx.progress.done();
  console.log(`flow control (${mode}, ${Math.round((Date.now() - started) / 1_000)} s)`);
  for (const r of ctx.results) {
    const { median, min, max, values } = r.summary;
    const fmt = (v: number) =>
      Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : v.toFixed(2);
    const spread = values.length > 1 ? ` [${fmt(min)}–${fmt(max)}]` : "";
    console.log(`  ${r.case} — ${r.metric}: ${fmt(median)}${spread} ${r.unit}`);
  }
  for (const note of ctx.notes) console.log(`\n${note.text}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
