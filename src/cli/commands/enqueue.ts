import { z } from "zod";
import type { EnqueueOptions } from "../../client.ts";
import { PgwakeError } from "../../errors.ts";
import { openDatabase } from "../database.ts";
import { UsageError } from "../errors.ts";
import { buildRegistry } from "../task-module.ts";
import { type CommandContext, describeDatabaseError, openPgwake, prepareSchema } from "./shared.ts";

const int = (min: number, max: number) =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be at least ${min}` })
    .max(max, { error: `must be at most ${max}` })
    .optional();

const FLAGS = z.object({
  queue: z.string().optional(),
  priority: int(-32_768, 32_767),
  "delay-ms": int(0, 10 * 365 * 86_400_000),
  "run-at": z
    .string()
    .refine((value) => !Number.isNaN(Date.parse(value)), { message: "must be an ISO 8601 time" })
    .transform((value) => new Date(value))
    .optional(),
  "max-attempts": int(1, 1_000),
  "timeout-ms": int(1, 86_400_000),
  "idempotency-key": z.string().min(1).max(255).optional(),
});

/** Reads the job options from the flags; every bad value is reported at once. */
export function enqueueOptions(extra: Record<string, unknown>): EnqueueOptions {
  const parsed = FLAGS.safeParse(extra);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `--${String(issue.path[0])}: ${issue.message}`,
    );
    throw new UsageError(problems.join("; "));
  }
  const flags = parsed.data;
  if (flags["run-at"] && flags["delay-ms"] !== undefined) {
    throw new UsageError("give --run-at or --delay-ms, not both");
  }
  return {
    queue: flags.queue,
    priority: flags.priority,
    delayMs: flags["delay-ms"],
    runAt: flags["run-at"],
    maxAttempts: flags["max-attempts"],
    timeoutMs: flags["timeout-ms"],
    idempotencyKey: flags["idempotency-key"],
  };
}

/** `pgwake enqueue <task> [json]`: adds one job and prints it as JSON. */
export async function enqueue({
  config,
  logger,
  lifecycle,
  parsed,
  print,
}: CommandContext): Promise<number> {
  const [task, json] = parsed.positionals;
  if (!task) throw new UsageError("missing <task>: pgwake enqueue <task> [payload-json]");
  let payload: unknown;
  if (json !== undefined) {
    try {
      payload = JSON.parse(json);
    } catch (error) {
      throw new UsageError(`payload is not valid JSON: ${(error as Error).message}`);
    }
  }
  const options = enqueueOptions(parsed.extra);
  const tasks = await buildRegistry(config);
  const database = await openDatabase(config, logger, lifecycle);
  lifecycle.checkpoint();
  const pgwake = openPgwake(database, config, tasks, logger, lifecycle);
  await prepareSchema(pgwake, database.embedded ? "migrate" : "require", database, logger);
  let result: Awaited<ReturnType<typeof pgwake.enqueue>>;
  try {
    // The name comes from the command line: untyped, and checked against the known tasks.
    result = await pgwake.untyped().enqueue(task, payload, options);
  } catch (error) {
    if (error instanceof PgwakeError && error.code !== "DATABASE_UNAVAILABLE") {
      const hint =
        error.code === "UNKNOWN_TASK"
          ? "\n(give --tasks with the module that defines it, or PGWAKE_UNKNOWN_TASKS=warn for a task run elsewhere)"
          : error.details
            ? ` ${JSON.stringify(error.details)}`
            : "";
      throw new UsageError(`${error.message}${hint}`, { cause: error });
    }
    throw describeDatabaseError(error, database);
  }
  if (result.duplicate) {
    logger.warn(
      { jobId: result.job.id, idempotencyKey: options.idempotencyKey },
      "idempotency key already used: printing the original job",
    );
  }
  // The HTTP API's answer to POST /jobs has the same shape.
  print(`${JSON.stringify({ job: result.job, duplicate: result.duplicate }, null, 2)}\n`);
  return 0;
}
