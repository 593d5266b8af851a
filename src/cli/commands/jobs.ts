import { z } from "zod";
import { JOB_STATUSES, type Job, type JobStatus } from "../../jobs/types.ts";
import { CommandError, EXIT, UsageError } from "../errors.ts";
import { oneLine, renderTable, shortTime } from "../table.ts";
import { type CommandContext, openForCommand, withDatabase } from "./shared.ts";

const QUEUE_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

const int = (min: number, max: number) =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be at least ${min}` })
    .max(max, { error: `must be at most ${max}` });

const statuses = z.string().transform((value, ctx) => {
  const items = value
    .split(",")
    .map((item) => item.trim().toLowerCase())
    .filter((item) => item.length > 0);
  const wrong = items.filter((item) => !(JOB_STATUSES as readonly string[]).includes(item));
  if (items.length === 0 || wrong.length > 0) {
    ctx.addIssue({ code: "custom", message: `must be a list of ${JOB_STATUSES.join(", ")}` });
    return z.NEVER;
  }
  return items as JobStatus[];
});

const LIST_FLAGS = z.object({
  queue: z.string().regex(QUEUE_NAME, { message: "not a queue name" }).optional(),
  status: statuses.optional(),
  task: z.string().min(1).max(128).optional(),
  limit: int(1, 1_000).default(50),
  before: int(1, Number.MAX_SAFE_INTEGER).optional(),
});

/** Parses flags with a zod object; every bad flag is reported at once (exit 2). */
export function parseFlags<T extends z.ZodType>(
  schema: T,
  extra: Record<string, unknown>,
): z.output<T> {
  const parsed = schema.safeParse(extra);
  if (!parsed.success) {
    throw new UsageError(
      parsed.error.issues.map((issue) => `--${String(issue.path[0])}: ${issue.message}`).join("; "),
    );
  }
  return parsed.data;
}

/** Job ids given as arguments: positive whole numbers, each once. */
export function parseIds(positionals: readonly string[]): number[] {
  const ids = positionals.map((text) => {
    const id = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(id) || id < 1) {
      throw new UsageError(`not a job id: ${JSON.stringify(text)}`);
    }
    return id;
  });
  return [...new Set(ids)];
}

const attemptsOf = (job: Job) => `${job.attempts}/${job.maxAttempts}`;

/** `pgwake jobs list`: one page of jobs, newest first. */
export async function jobsList(ctx: CommandContext): Promise<number> {
  const flags = parseFlags(LIST_FLAGS, ctx.parsed.extra);
  const { pgwake, database } = await openForCommand(ctx);
  const page = await withDatabase(database, () =>
    pgwake.listJobs({
      queue: flags.queue,
      statuses: flags.status,
      task: flags.task,
      beforeId: flags.before,
      limit: flags.limit,
    }),
  );
  if (ctx.parsed.extra.json) {
    ctx.print(`${JSON.stringify({ jobs: page.jobs, nextBefore: page.nextBeforeId }, null, 2)}\n`);
    return EXIT.ok;
  }
  if (page.jobs.length === 0) {
    ctx.print("no jobs\n");
    return EXIT.ok;
  }
  ctx.print(
    renderTable(
      ["ID", "STATUS", "QUEUE", "TASK", "ATTEMPTS", "PRIORITY", "RUN AT", "CREATED"],
      page.jobs.map((job) => [
        String(job.id),
        job.status,
        job.queue,
        job.task,
        attemptsOf(job),
        String(job.priority),
        shortTime(job.runAt),
        shortTime(job.createdAt),
      ]),
    ),
  );
  if (page.nextBeforeId !== null) {
    ctx.print(`more: pgwake jobs list --before ${page.nextBeforeId} (same filters)\n`);
  }
  return EXIT.ok;
}

/** `pgwake jobs get <id>`: the job and the start of its timeline. */
export async function jobsGet(ctx: CommandContext): Promise<number> {
  const [id] = parseIds(ctx.parsed.positionals);
  const flags = parseFlags(z.object({ events: int(0, 1_000).default(20) }), ctx.parsed.extra);
  const { pgwake, database } = await openForCommand(ctx);
  const job = await withDatabase(database, () => pgwake.getJob(id!));
  if (!job) throw new CommandError(`job ${id} not found`);
  const timeline =
    flags.events > 0
      ? await withDatabase(database, () => pgwake.timeline(id!, { limit: flags.events }))
      : null;
  const events = timeline?.events ?? [];
  if (ctx.parsed.extra.json) {
    const json = { job, events, nextEventsCursor: timeline?.nextCursor ?? null };
    ctx.print(`${JSON.stringify(json, null, 2)}\n`);
    return EXIT.ok;
  }
  const rows: [string, string][] = [
    ["id", String(job.id)],
    ["status", job.status],
    ["queue", job.queue],
    ["task", job.task],
    ["attempts", attemptsOf(job)],
    ["priority", String(job.priority)],
    ["run at", shortTime(job.runAt)],
    ["created", shortTime(job.createdAt)],
    ["started", shortTime(job.startedAt)],
    ["finished", shortTime(job.finishedAt)],
  ];
  if (job.idempotencyKey !== null) rows.push(["idempotency key", job.idempotencyKey]);
  if (job.leaseOwner !== null) rows.push(["worker", job.leaseOwner]);
  rows.push(["payload", JSON.stringify(job.payload)]);
  if (job.result !== null && job.result !== undefined) {
    rows.push(["result", JSON.stringify(job.result)]);
  }
  if (job.lastError) rows.push(["last error", oneLine(job.lastError.message, 200)]);
  const width = Math.max(...rows.map(([key]) => key.length)) + 2;
  ctx.print(rows.map(([key, value]) => `${`${key}:`.padEnd(width)}${value}\n`).join(""));
  if (events.length > 0) {
    ctx.print("\n");
    ctx.print(
      renderTable(
        ["TIME", "EVENT", "ATTEMPT", "WORKER", "MESSAGE"],
        events.map((event) => [
          shortTime(event.at),
          event.kind,
          event.attempt === null ? "—" : String(event.attempt),
          event.workerId ?? "",
          oneLine(event.message ?? "", 80),
        ]),
      ),
    );
    if (timeline?.nextCursor !== null && timeline?.nextCursor !== undefined) {
      ctx.print(
        `(more events: --events ${Math.min(1_000, flags.events * 2)}, or GET /jobs/${id}/events)\n`,
      );
    }
  }
  return EXIT.ok;
}

/** Why an id was not acted on: it does not exist, or its status does not allow it. */
async function whyNot(
  ids: readonly number[],
  getJob: (id: number) => Promise<Job | null>,
): Promise<{ id: number; status: JobStatus | null; reason: string }[]> {
  return Promise.all(
    ids.map(async (id) => {
      const job = await getJob(id);
      return job
        ? { id, status: job.status, reason: `job ${id} is ${job.status}` }
        : { id, status: null, reason: `job ${id} not found` };
    }),
  );
}

/** `pgwake jobs retry <id>…`: failed or cancelled jobs back to pending. */
export async function jobsRetry(ctx: CommandContext): Promise<number> {
  const ids = parseIds(ctx.parsed.positionals);
  const { pgwake, database } = await openForCommand(ctx);
  const retried = await withDatabase(database, () => pgwake.retry(ids));
  const done = new Set(retried.map((job) => job.id));
  const missed = await withDatabase(database, () =>
    whyNot(
      ids.filter((id) => !done.has(id)),
      (id) => pgwake.getJob(id),
    ),
  );
  return report(ctx, "retried", retried, missed, "only failed or cancelled jobs can be retried");
}

/** `pgwake jobs cancel <id>…`: pending, retrying or running jobs cancelled. */
export async function jobsCancel(ctx: CommandContext): Promise<number> {
  const ids = parseIds(ctx.parsed.positionals);
  const flags = parseFlags(
    z.object({ reason: z.string().max(1_000).optional() }),
    ctx.parsed.extra,
  );
  const { pgwake, database } = await openForCommand(ctx);
  const cancelled = await withDatabase(database, () =>
    pgwake.cancel(ids, flags.reason ?? "cancelled with pgwake jobs cancel"),
  );
  const done = new Set(cancelled.map((c) => c.job.id));
  const missed = await withDatabase(database, () =>
    whyNot(
      ids.filter((id) => !done.has(id)),
      (id) => pgwake.getJob(id),
    ),
  );
  return report(
    ctx,
    "cancelled",
    cancelled.map((c) => ({ ...c.job, was: c.was })),
    missed,
    "finished jobs cannot be cancelled",
  );
}

/** Prints what was done and what was not; exit 1 when anything was not. */
function report(
  ctx: CommandContext,
  verb: "retried" | "cancelled",
  done: readonly (Job & { was?: JobStatus })[],
  missed: readonly { id: number; status: JobStatus | null; reason: string }[],
  rule: string,
): number {
  const code = missed.length > 0 ? EXIT.failure : EXIT.ok;
  if (ctx.parsed.extra.json) {
    const notDone = verb === "retried" ? "notRetried" : "notCancelled";
    ctx.print(`${JSON.stringify({ [verb]: done, [notDone]: missed }, null, 2)}\n`);
  } else {
    for (const job of done) {
      const was = job.was ? ` (was ${job.was})` : "";
      ctx.print(`job ${job.id} ${verb}${was}: now ${job.status}\n`);
    }
  }
  for (const item of missed) process.stderr.write(`pgwake jobs: ${item.reason} (${rule})\n`);
  return code;
}
