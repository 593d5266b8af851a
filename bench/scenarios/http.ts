import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort } from "../../test/helpers/postgres.ts";
import { exitAll, spawnChildren } from "../lib/child.ts";
import type { BenchContext } from "../lib/context.ts";
import { runLoad } from "../lib/openload.ts";
import { percentile, sleep, summarize } from "../lib/stats.ts";
import { createPgwake } from "../lib/systems.ts";

/** `node bin/pgwake.js api` on a free port, ready when /ready answers 200. */
export async function startApiProcess(
  databaseUrl: string,
  schema: string,
  extraEnv: Record<string, string> = {},
): Promise<{ url: string; pid: number; close(): Promise<void> }> {
  const port = await freePort();
  const bin = fileURLToPath(new URL("../../bin/pgwake.js", import.meta.url));
  const child = spawn(process.execPath, [bin, "api"], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PGWAKE_SCHEMA: schema,
      PORT: String(port),
      HOST: "127.0.0.1",
      PGWAKE_LOG_LEVEL: "warn",
      PGWAKE_BUILTIN_TASKS: "off",
      ...extraEnv,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`pgwake api exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/ready`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("pgwake api did not become ready in 30 s");
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url,
    pid: child.pid!,
    close: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

interface RunFigures {
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
}

/**
 * Scenario 3: POST /jobs over real sockets to a `pgwake api` process, with one worker process
 * draining what arrives. Fixed rates are offered open-loop (requests spread evenly over each
 * second, latency counted from when each request was due); saturation is a closed loop, every
 * connection sending again as soon as it is answered.
 */
export async function httpScenario(ctx: BenchContext): Promise<void> {
  const { reps } = ctx.settings;
  const { seconds, rates, connections } = ctx.settings.http;
  const adapter = await createPgwake(ctx.url, "http");
  const children = await spawnChildren(1, {
    system: "pgwake",
    url: ctx.url,
    schema: adapter.schema,
    queue: adapter.queue,
    task: adapter.task,
    concurrency: 100,
    yieldInHandler: true,
  });
  let server: Awaited<ReturnType<typeof startApiProcess>> | undefined;
  try {
    await children[0]!.request({ type: "prepare" }, "prepared");
    await children[0]!.request({ type: "start" }, "started");
    // The API runs as the real `pgwake api` process, so the load generator (in this process)
    // does not share its event loop with the server it measures.
    server = await startApiProcess(ctx.url, adapter.schema);
    const url = server.url;
    const body = JSON.stringify({ task: adapter.task, payload: {} });
    const probe = await fetch(`${url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    if (probe.status >= 300) {
      ctx.notes.push({
        scenario: "http",
        text: `skipped: API not available (POST /jobs answered ${probe.status}: ${(await probe.text()).slice(0, 200)})`,
      });
      return;
    }
    const once = async (rate: number | undefined, duration: number): Promise<RunFigures> => {
      const run = await runLoad({
        url: `${url}/jobs`,
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        connections,
        seconds: duration,
        ...(rate ? { rate } : {}),
      });
      return {
        rps: run.rps,
        p50: percentile(run.latencies, 50),
        p95: percentile(run.latencies, 95),
        p99: percentile(run.latencies, 99),
        errors: run.errors,
      };
    };
    await once(undefined, 1); // warm-up
    const top = Math.max(...rates);
    const cases: { label: string; rate?: number; checkpoint?: boolean }[] = [
      ...rates.map((rate) => ({ label: `${rate.toLocaleString("en-US")} req/s offered`, rate })),
      { label: "saturation" },
      // Production meets checkpoints; this is the harsh kind (immediate, not spread out).
      {
        label: `${top.toLocaleString("en-US")} req/s offered, CHECKPOINT 1 s in`,
        rate: top,
        checkpoint: true,
      },
    ];
    for (const { label, rate, checkpoint } of cases) {
      const runs: RunFigures[] = [];
      for (let rep = 1; rep <= reps; rep++) {
        ctx.progress.step(`POST /jobs, ${label}, rep ${rep}/${reps}`);
        const running = once(rate, seconds);
        if (checkpoint) {
          await sleep(1_000);
          await ctx.admin.query("CHECKPOINT");
        }
        runs.push(await running);
      }
      const kase = `POST /jobs, ${label}, ${connections} connections, ${seconds} s`;
      const row = (
        metric: string,
        unit: string,
        better: "higher" | "lower",
        pick: (r: RunFigures) => number,
      ) => ({
        scenario: "http",
        system: "pgwake" as const,
        case: kase,
        metric,
        unit,
        better,
        summary: summarize(runs.map(pick)),
      });
      ctx.results.push(
        row("requests", "req/s", "higher", (r) => r.rps),
        row("latency p50", "ms", "lower", (r) => r.p50),
        row("latency p95", "ms", "lower", (r) => r.p95),
        row("latency p99", "ms", "lower", (r) => r.p99),
        row("non-2xx or errors", "requests", "lower", (r) => r.errors),
      );
    }
  } finally {
    await server?.close();
    await children[0]!.request({ type: "stop" }, "stopped", 60_000).catch(() => {});
    await exitAll(children);
    await adapter.drop();
  }
}
