import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SchemaSql } from "../../src/db/sql.ts";
import { createSchedule } from "../../src/schedules/store.ts";
import { dbNow, expectEverySecondOnce, runsOf, tickJobsOf } from "../fixtures/schedule-helpers.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { deferred, waitFor } from "../helpers/wait.ts";

const FIXTURE = fileURLToPath(new URL("../fixtures/schedule-process.ts", import.meta.url));
const SCHEDULES = 8;
const PROCESSES = 3;
const DURATION_MS = 20_000;

interface Child {
  id: string;
  process: ChildProcess;
  ready: Promise<void>;
  exited: Promise<void>;
  fired: number;
}

describe("a fleet of schedule processes", () => {
  let db: TestDb;
  const children = new Map<number, Child>();
  /** Ticks each slot's processes fired, over all their restarts. */
  const firedBySlot: number[] = [];
  let spawned = 0;

  beforeAll(async () => {
    db = await createTestDb("schedules-fleet");
  });
  afterAll(async () => {
    for (const child of children.values()) {
      child.process.kill("SIGCONT");
      child.process.kill("SIGKILL");
    }
    await Promise.all([...children.values()].map((child) => child.exited));
    await db?.close();
  });

  function start(slot: number): Child {
    const id = `p${slot}-${++spawned}`;
    const proc = spawn(process.execPath, [FIXTURE], {
      env: { ...process.env, PGWAKE_URL: db.url, PGWAKE_SCHEMA: db.schema, PGWAKE_PROCESS_ID: id },
      stdio: ["pipe", "pipe", "inherit"],
    });
    const ready = deferred();
    const exited = deferred();
    const child: Child = {
      id,
      process: proc,
      ready: ready.promise,
      exited: exited.promise,
      fired: 0,
    };
    proc.once("exit", () => exited.resolve());
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      if (line === `ready ${id}`) ready.resolve();
      const pass = /^pass (\d+) \d+$/.exec(line);
      if (pass) {
        child.fired += Number(pass[1]);
        firedBySlot[slot] = (firedBySlot[slot] ?? 0) + Number(pass[1]);
      }
    });
    children.set(slot, child);
    return child;
  }

  async function kill(slot: number): Promise<void> {
    const child = children.get(slot)!;
    child.process.kill("SIGKILL");
    await child.exited;
  }

  /** Ticks fired so far across the schedules (a condition to pace the chaos on). */
  const firedTicks = async () =>
    (
      await db.query<{ n: number }>(
        "SELECT coalesce(sum(ticks_fired), 0)::int AS n FROM {{schema}}.schedules",
      )
    )[0]!.n;

  it("make exactly one job per tick over 20 s while processes are SIGKILLed, restarted and frozen", {
    timeout: 90_000,
  }, async () => {
    const sql = new SchemaSql(db.schema);
    const names = Array.from({ length: SCHEDULES }, (_, i) => `fleet-${i}`);
    for (const name of names) {
      await createSchedule(db.pool, sql, {
        name,
        cron: "* * * * * *",
        task: "tick",
        catchUp: "each",
      });
    }
    const firstTick = new Map(
      (
        await db.query<{ name: string; next_run_at: Date }>(
          "SELECT name, next_run_at FROM {{schema}}.schedules",
        )
      ).map((r) => [r.name, r.next_run_at]),
    );
    for (let slot = 0; slot < PROCESSES; slot++) start(slot);
    await Promise.all([...children.values()].map((c) => c.ready));

    const startedAt = await dbNow(db);
    const until = startedAt.getTime() + DURATION_MS;
    let kills = 0;
    let frozeOnce = false;
    let round = 0;
    while ((await dbNow(db)).getTime() < until) {
      const slot = round++ % PROCESSES;
      const before = await firedTicks();
      if (!frozeOnce && round === 4) {
        // A frozen process holds no lock another one needs: the others keep firing meanwhile.
        frozeOnce = true;
        const frozen = children.get(slot)!;
        frozen.process.kill("SIGSTOP");
        try {
          await waitFor(async () => (await firedTicks()) >= before + 3 * SCHEDULES, {
            timeoutMs: 15_000,
            intervalMs: 50,
            message: "ticks fired by the others while one process is frozen",
          });
        } finally {
          frozen.process.kill("SIGCONT");
        }
        continue;
      }
      await kill(slot);
      kills++;
      // Some ticks pass with this process dead before it comes back.
      await waitFor(async () => (await firedTicks()) >= before + SCHEDULES, {
        timeoutMs: 15_000,
        intervalMs: 50,
        message: "ticks fired while a process is dead",
      });
      await start(slot).ready;
    }
    for (let slot = 0; slot < PROCESSES; slot++) await kill(slot);
    expect(kills).toBeGreaterThanOrEqual(6);

    // Every tick from each schedule's first to its last decided one: fired exactly once, with
    // exactly one job, due at the tick.
    let total = 0;
    for (const name of names) {
      const runs = await runsOf(db, name);
      const fired = expectEverySecondOnce(runs, firstTick.get(name)!);
      expect(
        runs.every((r) => r.outcome === "fired"),
        name,
      ).toBe(true);
      expect(fired.at(-1)!.getTime(), name).toBeGreaterThanOrEqual(until);
      const jobs = await tickJobsOf(db, name);
      expect(
        jobs.map((j) => j.run_at),
        name,
      ).toEqual(fired);
      expect(new Set(jobs.map((j) => j.idempotency_key)).size, name).toBe(jobs.length);
      expect(new Set(runs.map((r) => r.job_id)).size, name).toBe(runs.length);
      total += fired.length;
    }
    console.log(
      `schedule fleet: ${total} ticks of ${SCHEDULES} per-second schedules over ${DURATION_MS / 1000} s, ${kills} SIGKILLs, one process frozen; fired per process slot: ${firedBySlot.join(", ")}`,
    );
  });
});
