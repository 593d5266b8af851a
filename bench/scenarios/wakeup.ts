import pg from "pg";
import { type BenchChild, exitAll, spawnChildren } from "../lib/child.ts";
import type { BenchContext } from "../lib/context.ts";
import { formatNumber } from "../lib/format.ts";
import { ratePerSecondFor } from "../lib/load.ts";
import { summarize } from "../lib/stats.ts";
import { createPgwake } from "../lib/systems.ts";

type Workers = "idle" | "busy" | "none";

/**
 * Scenario 5: what the wake-up costs submitters. 8 and 16 submitters, each on its own
 * connection, call the library's single enqueue in a loop, while one worker process is idle
 * (every insert must wake it) or busy draining a backlog (it has unregistered, so inserts send
 * nothing), with NOTIFY on, or off (notify: false: no waiter rows, the trigger sends nothing).
 * Baselines: a plain INSERT into the jobs table (the trigger runs, finds no waiter), and into a
 * copy of the table without the trigger.
 */
export async function wakeupScenario(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const { seconds, submitters, backlog } = ctx.settings.wakeup;
  const adapter = await createPgwake(ctx.url, "wakeup");
  const { schema, task } = adapter;
  const q = `"${schema}"`;
  await adapter.pool.query(
    `CREATE TABLE ${q}.jobs_no_trigger (LIKE ${q}.jobs INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING INDEXES)`,
  );
  const maxLanes = Math.max(...submitters);
  const clientPool = new pg.Pool({
    connectionString: ctx.url,
    max: maxLanes,
    application_name: "bench-submitter",
  });
  const clients = await Promise.all(Array.from({ length: maxLanes }, () => clientPool.connect()));
  let warmedUp = false;
  /** Median jobs/s by "submitters|workers|notify". */
  const medians = new Map<string, number>();
  try {
    const configs: {
      workers: Workers;
      notify: boolean;
      label: string;
      call: (lane: number) => Promise<unknown>;
    }[] = [];
    const enqueue = (lane: number) => adapter.pgwake.enqueue(task, {}, { client: clients[lane]! });
    for (const workers of ["idle", "busy"] as const) {
      for (const notify of [true, false]) {
        configs.push({
          workers,
          notify,
          label: `library enqueue, worker ${workers}, wake-up ${notify ? "on" : "off"}`,
          call: enqueue,
        });
      }
    }
    configs.push({
      workers: "none",
      notify: false,
      label: "baseline: plain INSERT into jobs (trigger, no waiter)",
      // ready_seq has no default (insert_jobs sets it to the id): any value does for a baseline.
      call: (lane) =>
        clients[lane]!.query(`INSERT INTO ${q}.jobs (task, ready_seq) VALUES ($1, 0)`, [task]),
    });
    configs.push({
      workers: "none",
      notify: false,
      label: "baseline: plain INSERT into a trigger-less copy",
      call: (lane) =>
        clients[lane]!.query(`INSERT INTO ${q}.jobs_no_trigger (task, ready_seq) VALUES ($1, 0)`, [
          task,
        ]),
    });
    for (const lanes of submitters) {
      for (const config of configs) {
        const rates: number[] = [];
        for (let rep = warmedUp ? 1 : 0; rep <= reps; rep++) {
          ctx.progress.step(
            `${lanes} submitters, ${config.label}, ${rep === 0 ? "warm-up" : `rep ${rep}/${reps}`}`,
          );
          await adapter.reset();
          await adapter.pool.query(`TRUNCATE ${q}.jobs_no_trigger`);
          if (config.workers === "busy") await adapter.bulk(backlog, 10_000);
          await adapter.vacuum();
          let children: BenchChild[] = [];
          try {
            if (config.workers !== "none") {
              children = await spawnChildren(1, {
                system: "pgwake",
                url: ctx.url,
                schema,
                queue: adapter.queue,
                task,
                concurrency: 100,
                notify: config.notify,
                yieldInHandler: true,
              });
              await children[0]!.request({ type: "prepare" }, "prepared");
              await children[0]!.request({ type: "start" }, "started");
              if (config.workers === "idle") {
                // Idle means caught up and registered as a waiter (with notify on).
                await new Promise((resolve) => setTimeout(resolve, 300));
              }
            }
            const rate = await ratePerSecondFor(seconds, lanes, config.call);
            if (config.workers === "busy") {
              const { remaining } = await adapter.remaining();
              if (remaining === 0) {
                ctx.notes.push({
                  scenario: "wakeup",
                  text: `backlog ran out during "${config.label}" (${lanes} submitters): the worker was not busy the whole time`,
                });
              }
            }
            if (rep > 0) rates.push(rate);
          } finally {
            for (const c of children)
              await c.request({ type: "stop" }, "stopped", 60_000).catch(() => {});
            await exitAll(children);
          }
        }
        warmedUp = true;
        medians.set(`${lanes}|${config.workers}|${config.notify}`, summarize(rates).median);
        ctx.results.push({
          scenario: "wakeup",
          system: "pgwake",
          case: `${lanes} submitters, ${config.label}`,
          metric: "throughput",
          unit: "jobs/s",
          better: "higher",
          summary: summarize(rates),
        });
      }
    }
  } finally {
    for (const c of clients) c.release();
    await clientPool.end();
    await adapter.drop();
  }
  const most = Math.max(...submitters);
  const cost = (workers: Workers) =>
    100 * (1 - medians.get(`${most}|${workers}|true`)! / medians.get(`${most}|${workers}|false`)!);
  const idle = cost("idle");
  const busy = cost("busy");
  ctx.verdicts.push({
    issue: "#11",
    target: `wake-up cost ≤ 10 % with ${most} submitters (library enqueue, wake-up on vs off)`,
    measured: `worker idle ${formatNumber(idle)} %, worker busy ${formatNumber(busy)} %`,
    met: Math.max(idle, busy) <= 10,
  });
}
