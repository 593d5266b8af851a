import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { freePort } from "../../test/helpers/postgres.ts";
import { exitAll, spawnChildren } from "../lib/child.ts";
import type { BenchContext } from "../lib/context.ts";
import { percentile, summarize } from "../lib/stats.ts";
import { createPgwake } from "../lib/systems.ts";

/** `node bin/pgwake.js api` on a free port, ready when /ready answers 200. */
async function startApiProcess(
  databaseUrl: string,
  schema: string,
): Promise<{ url: string; close(): Promise<void> }> {
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
 * Scenario 3: POST /jobs over a real socket with autocannon (as a library, in this process),
 * at fixed rates and at saturation, with one worker process draining what arrives.
 */
export async function httpScenario(ctx: BenchContext): Promise<void> {
  const appPath = fileURLToPath(new URL("../../src/api/app.ts", import.meta.url));
  const serverPath = fileURLToPath(new URL("../../src/api/server.ts", import.meta.url));
  if (!existsSync(appPath) || !existsSync(serverPath)) {
    ctx.notes.push({
      scenario: "http",
      text: "skipped: API not available (src/api/app.ts or src/api/server.ts missing)",
    });
    return;
  }
  let createApp: (options: { pgwake: unknown; acceptUnknownTasks?: boolean }) => { fetch: unknown };
  let serveApi: (
    app: unknown,
    options: { port: number },
  ) => Promise<{ url: string; close(): Promise<void> }>;
  try {
    ({ createApp } = (await import(appPath)) as { createApp: typeof createApp });
    ({ serveApi } = (await import(serverPath)) as { serveApi: typeof serveApi });
  } catch (error) {
    ctx.notes.push({
      scenario: "http",
      text: `skipped: API not available (${(error as Error).message})`,
    });
    return;
  }
  // autocannon ships no type declarations: import it by a name the type checker does not resolve.
  const autocannonModule = "autocannon";
  type Done = (
    error: Error | null,
    result: { requests: { average: number }; non2xx: number; errors: number },
  ) => void;
  type OnResponse = (client: unknown, status: number, bytes: number, responseTime: number) => void;
  const { default: autocannon } = (await import(autocannonModule)) as {
    default: (
      options: Record<string, unknown>,
      done: Done,
    ) => { on(event: "response", listener: OnResponse): void };
  };
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
  let server: { url: string; close(): Promise<void> } | undefined;
  try {
    await children[0]!.request({ type: "prepare" }, "prepared");
    await children[0]!.request({ type: "start" }, "started");
    // The API runs as the real `pgwake api` process, so the load generator (autocannon, in this
    // process) does not share its event loop with the server it measures.
    void createApp;
    void serveApi;
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
    const once = (rate: number | undefined, duration: number): Promise<RunFigures> =>
      new Promise((resolve, reject) => {
        const latencies: number[] = [];
        let errors = 0;
        const instance = autocannon(
          {
            url: `${url}/jobs`,
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
            connections,
            duration,
            ...(rate ? { overallRate: rate } : {}),
          },
          (
            error: Error | null,
            result: { requests: { average: number }; non2xx: number; errors: number },
          ) => {
            if (error) return reject(error);
            resolve({
              rps: result.requests.average,
              p50: percentile(latencies, 50),
              p95: percentile(latencies, 95),
              p99: percentile(latencies, 99),
              errors: errors + result.non2xx + result.errors,
            });
          },
        );
        instance.on(
          "response",
          (_client: unknown, status: number, _bytes: number, responseTime: number) => {
            if (status >= 300) errors++;
            latencies.push(responseTime);
          },
        );
      });
    await once(undefined, 1); // warm-up
    for (const rate of [...rates, undefined]) {
      const label = rate ? `${rate.toLocaleString("en-US")} req/s offered` : "saturation";
      const runs: RunFigures[] = [];
      for (let rep = 1; rep <= reps; rep++) {
        ctx.progress.step(`POST /jobs, ${label}, rep ${rep}/${reps}`);
        runs.push(await once(rate, seconds));
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
