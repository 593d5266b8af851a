import pg from "pg";
import { channelFor, quoteIdent } from "../../src/db/sql.ts";
import { BenchChild, exitAll } from "../lib/child.ts";
import { PGWAKE_DEFAULTS, variantChildConfig } from "../lib/configs.ts";
import type { BenchContext } from "../lib/context.ts";
import { formatNumber } from "../lib/format.ts";
import { ratePerSecondFor } from "../lib/load.ts";
import { times } from "../lib/report.ts";
import { nowMs, sleep, summarize, until } from "../lib/stats.ts";
import { createPgwake } from "../lib/systems.ts";

/** Where the fleet's jobs go; the measured submissions go to another queue it does not serve. */
const ELSEWHERE = "elsewhere";
/** Children started at once (each start costs a core for a moment). */
const SPAWN_BATCH = 5;

/** The server the fleet runs against: the bench's own when it has room, else a dedicated one. */
async function fleetServer(
  ctx: BenchContext,
  workers: number,
): Promise<{ url: string; label: string; stop(): Promise<void> }> {
  const needed = 2 * workers + 40;
  if (process.env.BENCH_FLEET_SERVER === "shared") {
    return { url: ctx.url, label: "the bench's server", stop: async () => {} };
  }
  // Other sessions share the bench's server: a dedicated one never takes their connections.
  const { startDedicatedPostgres } = await import("../../test/helpers/postgres.ts");
  const server = await startDedicatedPostgres(["-c", `max_connections=${needed + 20}`]);
  return {
    url: server.url,
    label: `a dedicated embedded PostgreSQL (max_connections ${needed + 20})`,
    stop: server.stop,
  };
}

async function spawnFleet(
  ctx: BenchContext,
  count: number,
  config: Parameters<typeof BenchChild.spawn>[0],
): Promise<BenchChild[]> {
  const children: BenchChild[] = [];
  try {
    for (let i = 0; i < count; i += SPAWN_BATCH) {
      ctx.progress.step(
        `fleet: spawning worker processes ${i + 1}–${Math.min(count, i + SPAWN_BATCH)}`,
      );
      const batch = Array.from({ length: Math.min(SPAWN_BATCH, count - i) }, () =>
        BenchChild.spawn(config, 180_000),
      );
      children.push(...(await Promise.all(batch)));
    }
    return children;
  } catch (error) {
    await exitAll(children);
    throw error;
  }
}

/** Starts every worker (in batches) and waits until each has put its wake-up token. */
async function startFleet(
  ctx: BenchContext,
  children: readonly BenchChild[],
  admin: pg.Pool,
  schema: string,
): Promise<void> {
  for (let i = 0; i < children.length; i += SPAWN_BATCH) {
    ctx.progress.step(
      `fleet: starting workers ${i + 1}–${Math.min(children.length, i + SPAWN_BATCH)}`,
    );
    await Promise.all(
      children.slice(i, i + SPAWN_BATCH).map(async (c) => {
        await c.request({ type: "prepare" }, "prepared");
        await c.request({ type: "start" }, "started");
      }),
    );
  }
  await until(
    "every worker to wait for jobs",
    async () => {
      const { rows } = await admin.query<{ n: number }>(
        `SELECT count(*)::integer AS n FROM ${quoteIdent(schema)}.waiters WHERE queue = 'default'`,
      );
      return rows[0]!.n >= children.length ? true : undefined;
    },
    { timeoutMs: 120_000, everyMs: 200 },
  );
  await sleep(1_000);
}

async function stopFleet(ctx: BenchContext, children: readonly BenchChild[]): Promise<void> {
  ctx.progress.step("fleet: stopping the workers");
  await Promise.all(children.map((c) => c.request({ type: "stop" }, "stopped", 60_000)));
}

/** Claim statements of the whole fleet so far. */
async function fleetClaims(children: readonly BenchChild[]): Promise<number> {
  const counters = await Promise.all(
    children.map((c) => c.request({ type: "counters" }, "counters")),
  );
  return counters.reduce(
    (sum, c) => sum + (c.extra.claimsForward ?? 0) + (c.extra.claimsSweep ?? 0),
    0,
  );
}

interface WakeRound {
  /** Notifications addressed to one worker, per job. */
  addressedPerJob: number;
  /** Notifications to every waiting worker of a queue (sweep, due times), per job. */
  broadcastPerJob: number;
  /** Claim statements of the fleet per job, less what the fleet's polls made in as long idle. */
  claimsPerJob: number;
  /** Distinct worker processes that ran the jobs. */
  runners: number;
  /** Notifications by shape (their keys, and sweep when set), e.g. "q,w,k,t,sweep": 20. */
  shapes: Record<string, number>;
  /** The first submissions and notifications, in order, with their times. */
  log: string[];
}

/**
 * One job every `wakeIntervalMs` to the fleet's queue; counts the notifications on the jobs
 * channel (a LISTEN of the bench's own sees every one) and the fleet's claim statements, against
 * an idle window of the same length just before.
 */
async function wakeRound(
  ctx: BenchContext,
  children: readonly BenchChild[],
  listener: pg.Client,
  enqueue: (i: number) => Promise<unknown>,
): Promise<WakeRound> {
  const { wakeJobs, wakeIntervalMs } = ctx.settings.fleet;
  const duration = wakeJobs * wakeIntervalMs;
  const idleBefore = await fleetClaims(children);
  await sleep(duration);
  const idleClaims = (await fleetClaims(children)) - idleBefore;
  let addressed = 0;
  let broadcast = 0;
  const shapes: Record<string, number> = {};
  const log: string[] = [];
  const onNotification = (message: pg.Notification) => {
    const payload = JSON.parse(message.payload ?? "{}") as Record<string, unknown>;
    if (log.length < 60) log.push(`${(nowMs() - t0).toFixed(0)} ms ${message.payload}`);
    if (payload.w) addressed++;
    else broadcast++;
    const shape = `${Object.keys(payload).join(",")}${payload.sweep === true ? " (sweep)" : ""}`;
    shapes[shape] = (shapes[shape] ?? 0) + 1;
  };
  const handledBefore = children.map((c) => c.handled);
  const claimsBefore = await fleetClaims(children);
  const t0 = nowMs();
  listener.on("notification", onNotification);
  try {
    for (let i = 0; i < wakeJobs; i++) {
      const wait = t0 + i * wakeIntervalMs - nowMs();
      if (wait > 1) await sleep(wait);
      if (log.length < 60) log.push(`${(nowMs() - t0).toFixed(0)} ms job ${i} submitted`);
      await enqueue(i);
    }
    await until(
      "every job to run",
      () =>
        children.reduce((sum, c, k) => sum + c.handled - handledBefore[k]!, 0) >= wakeJobs
          ? true
          : undefined,
      { timeoutMs: 30_000, everyMs: 10 },
    );
    const elapsed = nowMs() - t0;
    await sleep(Math.max(0, duration - elapsed));
  } finally {
    listener.off("notification", onNotification);
  }
  const claims = (await fleetClaims(children)) - claimsBefore;
  const elapsed = nowMs() - t0;
  return {
    addressedPerJob: addressed / wakeJobs,
    broadcastPerJob: broadcast / wakeJobs,
    claimsPerJob: (claims - idleClaims * (elapsed / duration)) / wakeJobs,
    runners: children.filter((c, k) => c.handled > handledBefore[k]!).length,
    shapes,
    log,
  };
}

/**
 * Scenario `fleet` (issue 16, the connection budget): `workers` real worker processes (pgwake
 * defaults, pool size 1: 2 connections each) listening on one queue and idle.
 * 1. What they cost submitters: single enqueue throughput (the library's `enqueue()` with
 *    `inFlight` calls in flight, and the SQL `enqueue()` from `inFlight` connections, one commit
 *    per job) to a queue the fleet does not serve, with the fleet started and with it stopped
 *    (the processes stay, their connections close), rounds alternating.
 * 2. How many workers one job wakes: one job at a time to the fleet's queue; notifications on
 *    the jobs channel and the fleet's claims, poll-corrected, per job.
 * Runs on a dedicated embedded PostgreSQL sized for the fleet unless BENCH_FLEET_SERVER=shared.
 */
export async function fleetScenario(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const { workers, seconds, inFlight } = ctx.settings.fleet;
  ctx.progress.step("fleet: starting the server");
  const server = await fleetServer(ctx, workers);
  let children: BenchChild[] = [];
  const admin = new pg.Pool({
    connectionString: server.url,
    max: 2,
    application_name: "bench-fleet",
  });
  const sqlPool = new pg.Pool({
    connectionString: server.url,
    max: inFlight,
    application_name: "bench-sql",
  });
  const listener = new pg.Client({
    connectionString: server.url,
    application_name: "bench-listen",
  });
  listener.on("error", () => {});
  const library: number[][] = [[], []];
  const sql: number[][] = [[], []];
  const wakes: WakeRound[] = [];
  const adapter = await createPgwake(server.url, "fleet");
  try {
    const q = quoteIdent(adapter.schema);
    children = await spawnFleet(
      ctx,
      workers,
      variantChildConfig(adapter, server.url, {
        ...PGWAKE_DEFAULTS,
        child: { pgwakeDefaults: true, pgwake: { poolSize: 1 } },
      }),
    );
    const lib = () => adapter.pgwake.enqueue(adapter.task, {}, { queue: ELSEWHERE });
    const clients = await Promise.all(Array.from({ length: inFlight }, () => sqlPool.connect()));
    const viaSql = (lane: number) =>
      clients[lane]!.query(`SELECT (${q}.enqueue($1, '{}'::jsonb, $2)).duplicate`, [
        adapter.task,
        ELSEWHERE,
      ]);
    let fleetUp = false;
    try {
      // Rounds alternate which condition goes first, so a drift of the load touches both alike.
      for (let rep = 0; rep <= reps; rep++) {
        const order = rep % 2 === 0 ? [false, true] : [true, false];
        for (const withFleet of order) {
          if (withFleet && !fleetUp) {
            await startFleet(ctx, children, admin, adapter.schema);
            fleetUp = true;
          } else if (!withFleet && fleetUp) {
            await stopFleet(ctx, children);
            fleetUp = false;
          }
          const tag = `${withFleet ? `${workers} idle workers` : "no worker"}, ${rep === 0 ? "warm-up" : `round ${rep}/${reps}`}`;
          await adapter.reset();
          ctx.progress.step(`fleet: library enqueue, ${tag}`);
          const a = await ratePerSecondFor(seconds, inFlight, lib);
          await adapter.reset();
          ctx.progress.step(`fleet: SQL enqueue, ${tag}`);
          const b = await ratePerSecondFor(seconds, inFlight, viaSql);
          if (rep === 0) continue;
          library[withFleet ? 1 : 0]!.push(a);
          sql[withFleet ? 1 : 0]!.push(b);
        }
      }
      if (!fleetUp) {
        await startFleet(ctx, children, admin, adapter.schema);
        fleetUp = true;
      }
      await listener.connect();
      await listener.query(`LISTEN ${quoteIdent(channelFor(adapter.schema))}`);
      for (let rep = 0; rep <= reps; rep++) {
        ctx.progress.step(
          `fleet: one job at a time, ${rep === 0 ? "warm-up" : `round ${rep}/${reps}`}`,
        );
        const round = await wakeRound(ctx, children, listener, (i) =>
          adapter.pgwake.enqueue(adapter.task, { i }),
        );
        if (rep > 0) wakes.push(round);
      }
    } finally {
      for (const c of clients) c.release();
      if (fleetUp) await stopFleet(ctx, children).catch(() => {});
    }
  } finally {
    await exitAll(children);
    await listener.end().catch(() => {});
    await sqlPool.end();
    await admin.end();
    await adapter.drop();
    await server.stop();
  }
  const where = `on ${server.label}`;
  const push = (kase: string, values: number[], metric = "throughput", unit = "jobs/s") =>
    ctx.results.push({
      scenario: "fleet",
      system: "pgwake",
      case: kase,
      metric,
      unit,
      better: metric === "throughput" ? "higher" : "lower",
      summary: summarize(values),
    });
  const costs: string[] = [];
  let worstCost = 0;
  for (const [label, figures] of [
    [`library enqueue(), ${inFlight} in flight`, library],
    [`SQL enqueue(), ${inFlight} connections`, sql],
  ] as const) {
    push(`${label}, no worker connected, ${where}`, figures[0]!);
    push(`${label}, ${workers} idle worker processes (pool 1), ${where}`, figures[1]!);
    // Cost per round: the two conditions of a round ran back to back.
    const cost = summarize(figures[1]!.map((v, k) => 100 * (1 - v / figures[0]![k]!)));
    push(`${label}: cost of ${workers} idle workers, per round`, cost.values, "cost", "%");
    costs.push(
      `${label} ${formatNumber(cost.median)} % [${formatNumber(cost.min)}–${formatNumber(cost.max)}]`,
    );
    worstCost = Math.max(worstCost, cost.median);
  }
  const kase = `one job every ${ctx.settings.fleet.wakeIntervalMs} ms to ${workers} idle worker processes, ${where}`;
  push(
    kase,
    wakes.map((w) => w.addressedPerJob),
    "workers notified per job",
    "workers",
  );
  push(
    kase,
    wakes.map((w) => w.broadcastPerJob),
    "broadcast notifications per job",
    "notifications",
  );
  push(
    kase,
    wakes.map((w) => w.claimsPerJob),
    "claim statements per job (poll-corrected)",
    "claims",
  );
  push(
    kase,
    wakes.map((w) => w.runners),
    "worker processes that ran a job",
    "workers",
  );
  ctx.verdicts.push({
    issue: "#16",
    target: `${workers} idle listening worker processes cost < 5 % of single-enqueue throughput`,
    measured: costs.join("; "),
    met: library[0]!.length > 0 ? worstCost < 5 : null,
  });
  ctx.notes.push({
    scenario: "fleet",
    text: `notifications on the jobs channel while ${ctx.settings.fleet.wakeJobs} jobs were submitted one at a time, by shape, per round: ${wakes
      .map((w) => JSON.stringify(w.shapes))
      .join("; ")}`,
  });
  for (const [k, w] of wakes.entries()) {
    if (w.addressedPerJob + w.broadcastPerJob > 1.05) {
      ctx.notes.push({
        scenario: "fleet",
        text: `round ${k + 1}: more than one notification per job; the first events:\n  ${w.log.join("\n  ")}`,
      });
    }
  }
  const notified = summarize(wakes.map((w) => w.addressedPerJob)).median;
  const broadcast = summarize(wakes.map((w) => w.broadcastPerJob)).median;
  const claims = summarize(wakes.map((w) => w.claimsPerJob)).median;
  ctx.verdicts.push({
    issue: "#16",
    target: `one submitted job wakes one worker, not ${workers}`,
    measured: `${formatNumber(notified)} workers notified per job, ${formatNumber(broadcast)} broadcasts per job, ${formatNumber(claims)} claim statements per job beyond the polls (${times(claims / workers)} of the fleet)`,
    met: wakes.length > 0 ? notified <= 1.05 && broadcast === 0 && claims < 5 : null,
  });
}
