import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask, type Job, PgwakeError, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { deferred, waitFor } from "../helpers/wait.ts";

const reasons = new Map<number, unknown>();
const slow = defineTask({
  name: "slow",
  timeoutMs: 200,
  maxAttempts: 1,
  handler: (_payload, ctx) =>
    new Promise((_resolve, reject) => {
      ctx.signal.addEventListener("abort", () => {
        reasons.set(ctx.job.id, ctx.signal.reason);
        reject(ctx.signal.reason);
      });
    }),
});

// Ignores its signal and finishes (successfully!) once the test lets it.
const release = deferred();
const stubborn = defineTask({
  name: "stubborn",
  maxAttempts: 1,
  handler: async () => {
    await release.promise;
    return "too late";
  },
});

const returns = defineTask({
  name: "returns",
  maxAttempts: 1,
  handler: (payload: { kind: string }) => {
    switch (payload.kind) {
      case "bigint":
        return { count: 10n };
      case "function":
        return () => "not data";
      case "circular": {
        const o: Record<string, unknown> = {};
        o.self = o;
        return o;
      }
      case "undefined":
        return undefined;
      default:
        return { fine: true };
    }
  },
});

const throws = defineTask({
  name: "throws",
  maxAttempts: 1,
  handler: (payload: { kind: string }) => {
    switch (payload.kind) {
      case "string":
        throw "plain string";
      case "undefined":
        throw undefined;
      case "object":
        throw { reason: "quota", retryIn: 5 };
      default:
        throw new RangeError("out of range");
    }
  },
});

describe("timeouts, results and thrown values", () => {
  let db: TestDb;
  let worker: Worker;

  beforeAll(async () => {
    db = await createTestDb("timeouts", { tasks: [slow, stubborn, returns, throws] });
    worker = db.pgwake.worker({ pollIntervalMs: 200, maintenanceIntervalMs: 0, concurrency: 8 });
    await worker.start();
  });
  afterAll(async () => {
    release.resolve();
    await worker?.stop({ graceMs: 2_000 });
    await db?.close();
  });

  const finished = (id: number): Promise<Job> =>
    waitFor(
      async () => {
        const j = await db.pgwake.getJob(id);
        return j && ["completed", "failed"].includes(j.status) ? j : null;
      },
      { timeoutMs: 20_000, message: `job ${id} to finish` },
    );

  it("aborts the signal with JOB_TIMEOUT and fails the attempt", async () => {
    const { job } = await db.pgwake.enqueue("slow", {});
    expect(job.timeoutMs).toBe(200);
    const done = await finished(job.id);
    const reason = reasons.get(job.id);
    expect(reason).toBeInstanceOf(PgwakeError);
    expect((reason as PgwakeError).code).toBe("JOB_TIMEOUT");
    expect(done).toMatchObject({ status: "failed", attempts: 1 });
    expect(done.lastError).toMatchObject({
      name: "PgwakeError",
      code: "JOB_TIMEOUT",
      message: "job timed out after 200 ms",
    });
    const [event] = await db.query<{ message: string; data: { error: { code: string } } }>(
      "SELECT message, data FROM {{schema}}.job_events WHERE job_id = $1 AND kind = 'attempt_failed'",
      [job.id],
    );
    expect(event).toMatchObject({
      message: "job timed out after 200 ms",
      data: { error: { code: "JOB_TIMEOUT" } },
    });
  });

  it("a job's own timeoutMs wins over the task's", async () => {
    const { job } = await db.pgwake.enqueue("slow", {}, { timeoutMs: 50 });
    const done = await finished(job.id);
    expect(done.lastError?.message).toBe("job timed out after 50 ms");
  });

  it("a handler that ignores its signal cannot complete the job after its timeout", async () => {
    const { job } = await db.pgwake.enqueue("stubborn", {}, { timeoutMs: 100 });
    const failed = await finished(job.id);
    expect(failed.status).toBe("failed");
    expect(failed.lastError?.code).toBe("JOB_TIMEOUT");
    release.resolve();
    // The handler finishes now; its result must not overwrite the failure. A later job on the
    // same worker proves the worker went on (and flushed whatever it had).
    const { job: later } = await db.pgwake.enqueue("returns", { kind: "ok" });
    expect((await finished(later.id)).status).toBe("completed");
    const after = await db.pgwake.getJob(job.id);
    expect(after).toMatchObject({ status: "failed", result: null });
  });

  it.each(["bigint", "function", "circular"])(
    "a handler returning a %s fails the attempt with RESULT_NOT_JSON",
    async (kind) => {
      const { job } = await db.pgwake.enqueue("returns", { kind });
      const done = await finished(job.id);
      expect(done.status).toBe("failed");
      expect(done.lastError).toMatchObject({ name: "PgwakeError", code: "RESULT_NOT_JSON" });
      expect(done.lastError?.message).toMatch(/^handler returned a value that is not JSON: /);
    },
  );

  it("a handler returning undefined completes with a null result", async () => {
    const { job } = await db.pgwake.enqueue("returns", { kind: "undefined" });
    expect(await finished(job.id)).toMatchObject({ status: "completed", result: null });
  });

  it.each([
    [
      "string",
      {
        name: "NonErrorThrown",
        message: 'handler threw a non-Error value: "plain string"',
        value: "plain string",
      },
    ],
    [
      "undefined",
      {
        name: "NonErrorThrown",
        message: "handler threw a non-Error value: undefined",
        value: null,
      },
    ],
    [
      "object",
      {
        name: "NonErrorThrown",
        message: 'handler threw a non-Error value: {"reason":"quota","retryIn":5}',
        value: { reason: "quota", retryIn: 5 },
      },
    ],
    ["error", { name: "RangeError", message: "out of range" }],
  ])("a handler throwing %s ends with a clear last_error", async (kind, expected) => {
    const { job } = await db.pgwake.enqueue("throws", { kind });
    const done = await finished(job.id);
    expect(done.status).toBe("failed");
    expect(done.lastError).toMatchObject(expected);
    const [event] = await db.query<{ message: string; worker_id: string }>(
      "SELECT message, worker_id FROM {{schema}}.job_events WHERE job_id = $1 AND kind = 'attempt_failed'",
      [job.id],
    );
    expect(event).toEqual({ message: expected.message, worker_id: worker.id });
  });
});
