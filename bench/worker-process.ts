/**
 * A benchmark worker process: runs one job system's worker (pgwake, graphile-worker or pg-boss)
 * on command from the parent over IPC, counts handled jobs and, for the latency scenario,
 * records when each handler started (wall clock with sub-millisecond precision).
 *
 * Protocol (parent → child): prepare, start, stop, ping, counters, exit. The child answers
 * prepared, started, stopped (with counters), pong, counters, and sends progress every 50 ms
 * while running (only when the count moved).
 * "prepare" does everything that is not consuming jobs (connecting, pg-boss's start()), so that
 * the time from "start" measures consumption, not set-up.
 */
import pg from "pg";
import type { ChildConfig, ChildMessage, ParentMessage } from "./lib/protocol.ts";
import { nowMs } from "./lib/stats.ts";

const config = JSON.parse(process.argv[2] ?? "{}") as ChildConfig;

let handled = 0;
const starts: [number, number][] = [];
let progressTimer: NodeJS.Timeout | undefined;

function send(message: ChildMessage): void {
  process.send?.(message);
}

/**
 * The no-op handler: notes its start time (latency scenario), and with `yieldInHandler` yields
 * once to the event loop before returning, like any handler that does I/O.
 */
function handler(payload: unknown): undefined | Promise<void> {
  if (config.recordStarts) {
    const i = (payload as { i?: number } | null)?.i;
    if (typeof i === "number") starts.push([i, nowMs()]);
  }
  if (!config.yieldInHandler) {
    handled++;
    return undefined;
  }
  return new Promise<void>((resolve) =>
    setImmediate(() => {
      handled++;
      resolve();
    }),
  );
}

interface System {
  prepare(): Promise<void>;
  start(): Promise<void>;
  /** Stops consuming; returns extra counters. */
  stop(): Promise<Record<string, number>>;
  /** Counters so far, while running (pgwake only). */
  counters?(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/** pgwake's worker options for this child: its defaults, or the given tuning over them. */
function pgwakeOptions(): Record<string, unknown> {
  const tuning = config.pgwake ?? {};
  const options: Record<string, unknown> = config.pgwakeDefaults
    ? { ...tuning }
    : { concurrency: config.concurrency, ...tuning };
  if (config.notify !== undefined) options.notify = config.notify;
  if (config.pollIntervalMs) options.pollIntervalMs = config.pollIntervalMs;
  return options;
}

async function pgwakeSystem(): Promise<System> {
  const { Worker, defineTask } = await import("../src/index.ts");
  let worker: InstanceType<typeof Worker> | undefined;
  const make = () =>
    new Worker({
      connectionString: config.url,
      schema: config.schema,
      queues: [config.queue],
      tasks: [defineTask({ name: config.task, handler })],
      ...pgwakeOptions(),
    });
  const counters = async (w: InstanceType<typeof Worker>): Promise<Record<string, number>> => {
    const claims = await w.metrics.claims.get();
    const byKind = (kind: string) =>
      claims.values.filter((v) => v.labels.kind === kind).reduce((sum, v) => sum + v.value, 0);
    return {
      claimQueries: w.stats.claimQueries,
      claimed: w.stats.claimed,
      claimsForward: byKind("forward"),
      claimsSweep: byKind("sweep"),
    };
  };
  return {
    async prepare() {
      worker = make();
    },
    async start() {
      worker ??= make();
      await worker.start();
    },
    async counters() {
      return worker ? counters(worker) : {};
    },
    async stop(): Promise<Record<string, number>> {
      const w = worker;
      worker = undefined;
      if (!w) return {};
      await w.stop({ graceMs: 5_000 });
      return counters(w);
    },
    async close() {},
  };
}

async function graphileSystem(): Promise<System> {
  const { run, Logger } = await import("graphile-worker");
  const logger = new Logger(() => () => {});
  const maxPoolSize = config.maxPoolSize ?? config.concurrency + 2;
  const pool = new pg.Pool({ connectionString: config.url, max: maxPoolSize });
  pool.on("error", () => {});
  // graphile-worker checks that every client has an error handler, and warns otherwise.
  pool.on("connect", (client) => client.on("error", () => {}));
  let runner: Awaited<ReturnType<typeof run>> | undefined;
  return {
    async prepare() {
      const client = await pool.connect();
      client.release();
    },
    async start() {
      runner = await run({
        pgPool: pool,
        logger,
        noHandleSignals: true,
        taskList: {
          [config.task]: async (payload) => {
            await handler(payload);
          },
        },
        preset: {
          worker: {
            schema: config.schema,
            concurrentJobs: config.concurrency,
            maxPoolSize,
            pollInterval: config.pollIntervalMs ?? 2_000,
            ...(config.localQueueSize ? { localQueue: { size: config.localQueueSize } } : {}),
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
          },
        },
      });
    },
    async stop() {
      await runner?.stop();
      runner = undefined;
      return {};
    },
    async close() {
      await pool.end();
    },
  };
}

async function pgbossSystem(): Promise<System> {
  const { PgBoss } = await import("pg-boss");
  const boss = new PgBoss({
    connectionString: config.url,
    schema: config.schema,
    max: config.concurrency + 2,
    supervise: false,
    schedule: false,
    migrate: false,
    useListenNotify: config.notify ?? true,
  });
  boss.on("error", (error: unknown) =>
    send({ type: "log", text: `pg-boss error: ${String(error)}` }),
  );
  return {
    async prepare() {
      await boss.start();
    },
    async start() {
      await boss.work(
        config.queue,
        {
          batchSize: config.batchSize ?? 1,
          localConcurrency: config.concurrency,
          pollingIntervalSeconds: (config.pollIntervalMs ?? 2_000) / 1_000,
          notifyPollingIntervalSeconds: (config.pollIntervalMs ?? 2_000) / 1_000,
          burstWhenBatchFull: (config.batchSize ?? 1) > 1,
        },
        async (jobs: { data: unknown }[]) => {
          await Promise.all(jobs.map((job) => handler(job.data)));
        },
      );
    },
    async stop() {
      await boss.offWork(config.queue, { wait: true });
      return {};
    },
    async close() {
      await boss.stop({ graceful: true, close: true, timeout: 5_000 });
    },
  };
}

const systems = { pgwake: pgwakeSystem, graphile: graphileSystem, pgboss: pgbossSystem };

async function main(): Promise<void> {
  const system = await systems[config.system]();
  process.on("message", (raw) => {
    const message = raw as ParentMessage;
    void handle(system, message).catch((error: unknown) => {
      send({
        type: "error",
        text: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
    });
  });
  process.on("disconnect", () => process.exit(0));
  send({ type: "ready" });
}

async function handle(system: System, message: ParentMessage): Promise<void> {
  switch (message.type) {
    case "prepare":
      handled = 0;
      starts.length = 0;
      await system.prepare();
      send({ type: "prepared" });
      return;
    case "start": {
      // Progress only when it moved: an idle fleet of 100 children sends nothing.
      let reported = -1;
      progressTimer = setInterval(() => {
        if (handled === reported) return;
        reported = handled;
        send({ type: "progress", handled });
      }, 50);
      await system.start();
      send({ type: "started" });
      return;
    }
    case "counters":
      send({ type: "counters", handled, extra: (await system.counters?.()) ?? {} });
      return;
    case "stop": {
      clearInterval(progressTimer);
      const extra = await system.stop();
      send({ type: "stopped", handled, extra, starts: config.recordStarts ? starts : [] });
      return;
    }
    case "ping":
      send({ type: "pong", id: message.id, now: nowMs() });
      return;
    case "exit":
      await system.close();
      process.exit(0);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
