import { DEFAULT_QUEUE } from "../../jobs/enqueue.ts";
import type { QueueStats } from "../../jobs/queueStats.ts";
import { JOB_STATUSES } from "../../jobs/types.ts";
import { CommandError, EXIT, UsageError } from "../errors.ts";
import { renderTable, shortDuration } from "../table.ts";
import { type CommandContext, openForCommand, withDatabase } from "./shared.ts";

const QUEUE_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

/** Rows of a queue table: name, paused, a count per status, oldest ready job's wait, workers. */
export function queueTable(queues: readonly QueueStats[]): string {
  return renderTable(
    ["QUEUE", "PAUSED", ...JOB_STATUSES.map((s) => s.toUpperCase()), "OLDEST READY", "WORKERS"],
    queues.map((queue) => [
      queue.name,
      queue.paused ? "yes" : "no",
      ...JOB_STATUSES.map((status) => String(queue.counts[status] ?? 0)),
      shortDuration(queue.oldestPendingAgeMs),
      String(queue.workers.length),
    ]),
  );
}

/** `pgwake queues`: every known queue with its counts. */
export async function queuesList(ctx: CommandContext): Promise<number> {
  const { pgwake, database } = await openForCommand(ctx);
  const queues = await withDatabase(database, () => pgwake.queueStats());
  if (ctx.parsed.extra.json) {
    ctx.print(`${JSON.stringify({ queues }, null, 2)}\n`);
  } else {
    ctx.print(queues.length === 0 ? "no queues yet\n" : queueTable(queues));
  }
  return EXIT.ok;
}

async function setPaused(ctx: CommandContext, paused: boolean): Promise<number> {
  const [name] = ctx.parsed.positionals;
  if (!name || !QUEUE_NAME.test(name)) {
    throw new UsageError(`not a queue name: ${JSON.stringify(name ?? "")}`);
  }
  const { pgwake, database } = await openForCommand(ctx);
  // A misspelt name would leave a settings row that shows as a queue for ever (as the API does).
  const known = await withDatabase(database, () => pgwake.queueStats());
  if (name !== DEFAULT_QUEUE && !ctx.parsed.extra.create && !known.some((q) => q.name === name)) {
    const names = known.map((queue) => queue.name).join(", ") || "none yet";
    throw new CommandError(
      `no queue "${name}" is known (known: ${names}); to pause it before its first job, add --create`,
    );
  }
  const settings = await withDatabase(database, () =>
    paused ? pgwake.pauseQueue(name) : pgwake.resumeQueue(name),
  );
  if (ctx.parsed.extra.json) ctx.print(`${JSON.stringify(settings, null, 2)}\n`);
  else ctx.print(`queue ${settings.name} ${settings.paused ? "paused" : "resumed"}\n`);
  return EXIT.ok;
}

/** `pgwake queues pause <name>`. */
export function queuesPause(ctx: CommandContext): Promise<number> {
  return setPaused(ctx, true);
}

/** `pgwake queues resume <name>`. */
export function queuesResume(ctx: CommandContext): Promise<number> {
  return setPaused(ctx, false);
}
