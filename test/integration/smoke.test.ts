import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { defineTask, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

describe("enqueue → wake → run → complete", () => {
  let db: TestDb;
  let worker: Worker;
  const seen: number[] = [];
  const echo = defineTask({
    name: "echo",
    schema: z.object({ n: z.number() }),
    handler: async (payload, ctx) => {
      seen.push(payload.n);
      ctx.log("ran", { n: payload.n });
      return { doubled: payload.n * 2 };
    },
  });

  beforeAll(async () => {
    db = await createTestDb("smoke", { tasks: [echo] });
    worker = db.pgwake.worker({ pollIntervalMs: 60_000, concurrency: 4 });
    await worker.start();
    await waitFor(() => worker.listening, { message: "listener" });
  });
  afterAll(async () => {
    await worker.stop();
    await db.close();
  });

  it("runs a job and stores its result", async () => {
    const { job, duplicate } = await db.pgwake.enqueue("echo", { n: 21 });
    expect(duplicate).toBe(false);
    expect(job.status).toBe("pending");
    const done = await waitFor(async () => {
      const j = await db.pgwake.getJob(job.id);
      return j?.status === "completed" ? j : null;
    });
    expect(done.result).toEqual({ doubled: 42 });
    expect(done.attempts).toBe(1);
    const page = await db.pgwake.timeline(job.id);
    expect(page?.events.map((e) => e.kind)).toEqual(["enqueued", "claimed", "log", "completed"]);
  });
});
