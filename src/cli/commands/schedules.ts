import { SchemaSql } from "../../db/sql.ts";
import { SCHEDULE_CLI_RUNNERS, type ScheduleCommandId } from "../../schedules/cli.ts";
import { buildRegistry } from "../task-module.ts";
import { type CommandContext, openForCommand, withDatabase } from "./shared.ts";

/**
 * `pgwake schedules …`: the commands of src/schedules/cli.ts, run on this command's database with
 * the known tasks (built-ins and --tasks) so that a schedule's task and payload are checked.
 */
export function schedulesRunner(id: string): (ctx: CommandContext) => Promise<number> {
  const runner = SCHEDULE_CLI_RUNNERS[id as ScheduleCommandId];
  return async (ctx) => {
    const tasks = await buildRegistry(ctx.config);
    const { pgwake, database } = await openForCommand(ctx, tasks);
    return withDatabase(database, () =>
      runner(
        {
          db: pgwake.pool,
          sql: new SchemaSql(pgwake.schema),
          // Checked as an enqueue would: schemas, task defaults, the unknown-task policy.
          knowledge: { prepareJob: (job) => pgwake.prepare(job) },
          print: ctx.print,
        },
        { positionals: ctx.parsed.positionals, flags: ctx.parsed.extra },
      ),
    );
  };
}
