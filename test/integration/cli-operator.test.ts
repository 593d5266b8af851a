import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask, PermanentError } from "../../src/index.ts";
import { finished, killAll, pgwake } from "../fixtures/cli/spawn.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// The operator's commands (`pgwake jobs …`, `pgwake queues …`, `pgwake stats`) as child
// processes against a schema whose jobs went through a real worker.

const ok = defineTask({ name: "ops.ok", handler: () => ({ fine: true }) });
const boom = defineTask({
  name: "ops.boom",
  queue: "mail",
  handler: () => {
    throw new PermanentError("the mail server said no");
  },
});

let db: TestDb;
let env: Record<string, string>;
const ids = { completed: 0, failed: 0, waiting: 0 };

/** Runs a command to its end; its stdout parsed as JSON. */
async function json<T>(args: string[]): Promise<{ code: number | null; out: T; stderr: string }> {
  const run = pgwake([...args, "--json"], env);
  const { code } = await finished(run);
  return { code, out: (run.stdout() ? JSON.parse(run.stdout()) : null) as T, stderr: run.stderr() };
}

async function text(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const run = pgwake(args, env);
  const { code } = await finished(run);
  return { code, out: run.stdout(), err: run.stderr() };
}

beforeAll(async () => {
  db = await createTestDb("cli_ops", { tasks: [ok, boom] });
  env = { DATABASE_URL: db.url, PGWAKE_SCHEMA: db.schema };
  const worker = db.pgwake.worker({ queues: ["default", "mail"], pollIntervalMs: 100 });
  await worker.start();
  ids.completed = (await db.pgwake.enqueue("ops.ok")).job.id;
  ids.failed = (await db.pgwake.enqueue("ops.boom")).job.id;
  for (const id of [ids.completed, ids.failed]) {
    await waitFor(
      async () => ["completed", "failed"].includes((await db.pgwake.getJob(id))!.status),
      {
        timeoutMs: 30_000,
        message: `job ${id} to finish`,
      },
    );
  }
  await worker.stop();
  // Due in an hour: it waits, and nothing runs it.
  ids.waiting = (await db.pgwake.enqueue("ops.ok", {}, { delayMs: 3_600_000 })).job.id;
});

afterAll(async () => {
  killAll();
  await db.close();
});

describe("pgwake jobs", () => {
  it("list: newest first, filtered, paged, as JSON and as a table", async () => {
    const all = await json<{ jobs: { id: number; status: string }[]; nextBefore: number | null }>([
      "jobs",
      "list",
    ]);
    expect(all.code).toBe(0);
    expect(all.out.jobs.map((j) => j.id)).toEqual([ids.waiting, ids.failed, ids.completed]);
    expect(all.out.nextBefore).toBeNull();

    const failed = await json<{ jobs: { id: number }[] }>(["jobs", "list", "--status", "failed"]);
    expect(failed.out.jobs.map((j) => j.id)).toEqual([ids.failed]);
    const mail = await json<{ jobs: { id: number }[] }>(["jobs", "list", "--queue", "mail"]);
    expect(mail.out.jobs.map((j) => j.id)).toEqual([ids.failed]);

    const page = await json<{ jobs: { id: number }[]; nextBefore: number }>([
      "jobs",
      "list",
      "--limit",
      "1",
    ]);
    expect(page.out.jobs.map((j) => j.id)).toEqual([ids.waiting]);
    expect(page.out.nextBefore).toBe(ids.waiting);
    const next = await json<{ jobs: { id: number }[] }>([
      "jobs",
      "list",
      "--limit",
      "1",
      "--before",
      String(page.out.nextBefore),
    ]);
    expect(next.out.jobs.map((j) => j.id)).toEqual([ids.failed]);

    const table = await text(["jobs", "list"]);
    expect(table.code).toBe(0);
    const lines = table.out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^\s*ID\s+STATUS\s+QUEUE\s+TASK\s+ATTEMPTS/);
    expect(lines[2]).toMatch(
      new RegExp(`^\\s*${ids.failed}\\s+failed\\s+mail\\s+ops\\.boom\\s+1/1`),
    );
  });

  it("list refuses a bad status or limit with exit 2", async () => {
    const bad = await text(["jobs", "list", "--status", "done", "--limit", "0"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--status: must be a list of");
    expect(bad.err).toContain("--limit: must be at least 1");
  });

  it("get: the job, its last error and its timeline", async () => {
    const got = await json<{
      job: { id: number; status: string; lastError: { message: string } };
      events: { kind: string }[];
    }>(["jobs", "get", String(ids.failed)]);
    expect(got.code).toBe(0);
    expect(got.out.job).toMatchObject({ id: ids.failed, status: "failed" });
    expect(got.out.job.lastError.message).toContain("the mail server said no");
    expect(got.out.events.map((e) => e.kind)).toContain("enqueued");

    const table = await text(["jobs", "get", String(ids.failed)]);
    expect(table.out).toMatch(/^status:\s+failed$/m);
    expect(table.out).toMatch(/^last error:\s+.*the mail server said no/m);
    expect(table.out).toMatch(/TIME\s+EVENT\s+ATTEMPT/);
  });

  it("get: exit 1 for a job that does not exist, 2 for something that is not an id", async () => {
    const missing = await text(["jobs", "get", "999999999"]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("job 999999999 not found");
    const wrong = await text(["jobs", "get", "abc"]);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toContain('not a job id: "abc"');
  });

  it("retry: a failed job goes back; a completed one is named with its status, exit 1", async () => {
    const retried = await json<{
      retried: { id: number; status: string }[];
      notRetried: { id: number; status: string | null; reason: string }[];
    }>(["jobs", "retry", String(ids.failed), String(ids.completed), "999999999"]);
    expect(retried.code).toBe(1);
    expect(retried.out.retried.map((j) => j.id)).toEqual([ids.failed]);
    expect(retried.out.notRetried).toEqual([
      { id: ids.completed, status: "completed", reason: `job ${ids.completed} is completed` },
      { id: 999999999, status: null, reason: "job 999999999 not found" },
    ]);
    expect(retried.stderr).toContain("only failed or cancelled jobs can be retried");
    expect((await db.pgwake.getJob(ids.failed))!.attempts).toBe(0);
  });

  it("cancel: a waiting job is cancelled, with the reason on its event", async () => {
    const cancelled = await json<{ cancelled: { id: number; status: string; was: string }[] }>([
      "jobs",
      "cancel",
      String(ids.waiting),
      "--reason",
      "not needed",
    ]);
    expect(cancelled.code).toBe(0);
    expect(cancelled.out.cancelled).toEqual([
      expect.objectContaining({ id: ids.waiting, status: "cancelled" }),
    ]);
    expect((await db.pgwake.getJob(ids.waiting))!.status).toBe("cancelled");
    const again = await text(["jobs", "cancel", String(ids.waiting)]);
    expect(again.code).toBe(1);
    expect(again.err).toContain(`job ${ids.waiting} is cancelled`);
  });

  it("needs an action: exit 2 listing them; --help lists them", async () => {
    const none = await text(["jobs"]);
    expect(none.code).toBe(2);
    expect(none.err).toContain("list, get, retry, cancel");
    const help = await text(["jobs", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/jobs retry\s+send failed or cancelled jobs back/);
  });
});

describe("pgwake queues and stats", () => {
  it("queues: counts per queue; pause and resume", async () => {
    const listed = await json<{ queues: { name: string; paused: boolean; counts: object }[] }>([
      "queues",
    ]);
    expect(listed.code).toBe(0);
    expect(listed.out.queues.map((q) => q.name)).toEqual(["default", "mail"]);

    const paused = await json<{ name: string; paused: boolean }>(["queues", "pause", "mail"]);
    expect(paused.out).toMatchObject({ name: "mail", paused: true });
    const table = await text(["queues"]);
    expect(table.out).toMatch(/^mail\s+yes\s/m);
    expect(table.out).toMatch(/^default\s+no\s/m);
    const resumed = await text(["queues", "resume", "mail"]);
    expect(resumed.out).toBe("queue mail resumed\n");
  });

  it("pausing a queue nobody knows is refused unless --create (no phantom queue)", async () => {
    const typo = await text(["queues", "pause", "mial"]);
    expect(typo.code).toBe(1);
    expect(typo.err).toContain('no queue "mial" is known (known: default, mail)');
    expect((await json<{ queues: { name: string }[] }>(["queues"])).out.queues).toHaveLength(2);
    const created = await json<{ name: string; paused: boolean }>([
      "queues",
      "pause",
      "reports",
      "--create",
    ]);
    expect(created.out).toMatchObject({ name: "reports", paused: true });
    expect((await text(["queues", "resume", "reports"])).code).toBe(0);
  });

  it("stats: totals by status, queues and workers", async () => {
    const stats = await json<{
      totals: Record<string, number>;
      queues: { name: string }[];
      workers: unknown[];
    }>(["stats"]);
    expect(stats.code).toBe(0);
    expect(stats.out.queues.map((q) => q.name)).toEqual(["default", "mail", "reports"]);
    // Three jobs, each counted once: completed, retried (pending again), cancelled.
    const counted = Object.entries(stats.out.totals).filter(([, n]) => n > 0);
    expect(Object.fromEntries(counted)).toEqual({ completed: 1, pending: 1, cancelled: 1 });
    expect(stats.out.workers).toEqual([]);
    const table = await text(["stats"]);
    expect(table.out).toMatch(/^queues \(\d+/m);
    expect(table.out).toMatch(/^workers \(0\):/m);
  });
});

describe("pgwake schedules (registered from src/schedules/cli.ts)", () => {
  it("creates and lists a schedule of a known task", async () => {
    const created = await json<{ name: string; task: string }>([
      "schedules",
      "create",
      "nightly",
      "--cron",
      "0 3 * * *",
      "--task",
      "demo.echo",
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.out).toMatchObject({ name: "nightly", task: "demo.echo" });
    const listed = await json<{ schedules: { name: string }[] }>(["schedules"]);
    expect(listed.out.schedules.map((s) => s.name)).toEqual(["nightly"]);
    const help = await text(["schedules", "--help"]);
    expect(help.out).toMatch(/schedules trigger/);
  });
});
