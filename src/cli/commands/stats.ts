import { JOB_STATUSES, type JobStatus } from "../../jobs/types.ts";
import { EXIT } from "../errors.ts";
import { renderTable, shortTime } from "../table.ts";
import { queueTable } from "./queues.ts";
import { type CommandContext, openForCommand, withDatabase } from "./shared.ts";

/** `pgwake stats`: totals by status, the queue table and the live workers. */
export async function stats(ctx: CommandContext): Promise<number> {
  const { pgwake, database } = await openForCommand(ctx);
  const queues = await withDatabase(database, () => pgwake.queueStats());
  const totals = Object.fromEntries(JOB_STATUSES.map((status) => [status, 0])) as Record<
    JobStatus,
    number
  >;
  for (const queue of queues) {
    for (const status of JOB_STATUSES) totals[status] += queue.counts[status] ?? 0;
  }
  // A worker serving several queues is listed once.
  const workers = [
    ...new Map(
      queues.flatMap((queue) =>
        queue.workers.map((worker) => [
          worker.id,
          {
            ...worker,
            queues: queues
              .filter((q) => q.workers.some((w) => w.id === worker.id))
              .map((q) => q.name),
          },
        ]),
      ),
    ).values(),
  ];
  const paused = queues.filter((queue) => queue.paused).map((queue) => queue.name);
  if (ctx.parsed.extra.json) {
    ctx.print(`${JSON.stringify({ totals, paused, queues, workers }, null, 2)}\n`);
    return EXIT.ok;
  }
  ctx.print(
    renderTable(
      JOB_STATUSES.map((s) => s.toUpperCase()),
      [JOB_STATUSES.map((status) => String(totals[status]))],
    ),
  );
  ctx.print(
    `\nqueues (${queues.length}${paused.length > 0 ? `, paused: ${paused.join(", ")}` : ""}):\n`,
  );
  ctx.print(queues.length === 0 ? "  none yet\n" : queueTable(queues));
  ctx.print(`\nworkers (${workers.length}):\n`);
  ctx.print(
    workers.length === 0
      ? "  none running\n"
      : renderTable(
          ["WORKER", "HOST", "PID", "CONCURRENCY", "LISTENING", "QUEUES", "LAST SEEN"],
          workers.map((worker) => [
            worker.id,
            worker.host,
            String(worker.pid),
            String(worker.concurrency),
            worker.listening ? "yes" : "no",
            worker.queues.join(","),
            shortTime(worker.lastSeenAt),
          ]),
        ),
  );
  return EXIT.ok;
}
