import { type SchemaSql, statement } from "../../db/sql.ts";
import type { Queryable } from "../../db/types.ts";
import type { ScheduleDefinition } from "../definition.ts";
import type { ScheduleSource } from "../types.ts";

// Writes a deployment's declared schedules in one statement:
// - a new name is inserted (defined_by 'code', next_run_at planned afterwards);
// - a code schedule whose definition or owner differs is rewritten, keeping its history, pause
//   state and place (a changed expression or zone clears next_run_at, planned again from now);
// - a name held by a schedule defined another way (HTTP, CLI, SQL, library) is left alone and
//   reported as a conflict;
// - with pruning, this owner's code schedules that are no longer declared are deleted (only
//   those of the given tasks, when tasks are given).
// `before` reads the rows as they were, to tell inserted, rewritten and untouched apart.
const UPSERT_CODE_SCHEDULES = statement(
  "schedules_upsert_code",
  `WITH input AS (
     SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(
       name text, cron text, time_zone text, task text, payload jsonb, queue text,
       priority integer, max_attempts integer, timeout_ms integer, catch_up text,
       catch_up_limit integer, overlap text, definition_hash text)
   ), before AS (
     SELECT s.name, s.defined_by, s.definition_hash, s.owner
     FROM {{schema}}.schedules s JOIN input i ON i.name = s.name
   ), written AS (
     INSERT INTO {{schema}}.schedules AS s
       (name, cron, time_zone, task, payload, queue, priority, max_attempts, timeout_ms,
        catch_up, catch_up_limit, overlap, definition_hash, defined_by, owner)
     SELECT i.name, i.cron, i.time_zone, i.task, i.payload, i.queue, i.priority, i.max_attempts,
            i.timeout_ms, i.catch_up, i.catch_up_limit, i.overlap, i.definition_hash, 'code', $2
     FROM input i
     ORDER BY i.name
     ON CONFLICT (name) DO UPDATE
     SET cron = EXCLUDED.cron, time_zone = EXCLUDED.time_zone, task = EXCLUDED.task,
         payload = EXCLUDED.payload, queue = EXCLUDED.queue, priority = EXCLUDED.priority,
         max_attempts = EXCLUDED.max_attempts, timeout_ms = EXCLUDED.timeout_ms,
         catch_up = EXCLUDED.catch_up, catch_up_limit = EXCLUDED.catch_up_limit,
         overlap = EXCLUDED.overlap, definition_hash = EXCLUDED.definition_hash,
         owner = EXCLUDED.owner,
         next_run_at = CASE WHEN s.cron = EXCLUDED.cron AND s.time_zone = EXCLUDED.time_zone
                            THEN s.next_run_at END,
         invalid_reason = CASE WHEN s.cron = EXCLUDED.cron AND s.time_zone = EXCLUDED.time_zone
                               THEN s.invalid_reason END,
         revision = s.revision + 1, updated_at = now()
     WHERE s.defined_by = 'code'
       AND (s.definition_hash IS DISTINCT FROM EXCLUDED.definition_hash
            OR s.owner IS DISTINCT FROM EXCLUDED.owner)
     RETURNING s.name
   ), deleted AS (
     DELETE FROM {{schema}}.schedules s
     WHERE $3::boolean AND s.defined_by = 'code' AND s.owner = $2
       AND ($4::text[] IS NULL OR s.task = ANY ($4::text[]))
       AND NOT EXISTS (SELECT 1 FROM input i WHERE i.name = s.name)
     RETURNING s.name, s.definition_hash
   )
   SELECT i.name,
          CASE WHEN w.name IS NOT NULL AND b.name IS NULL THEN 'created'
               WHEN w.name IS NOT NULL THEN 'updated'
               WHEN b.defined_by IS NOT NULL AND b.defined_by <> 'code' THEN 'conflict'
               ELSE 'unchanged' END AS action,
          b.defined_by, b.definition_hash AS previous_hash, b.owner AS previous_owner
   FROM input i
   LEFT JOIN before b ON b.name = i.name
   LEFT JOIN written w ON w.name = i.name
   UNION ALL
   SELECT d.name, 'deleted', 'code', d.definition_hash, $2 FROM deleted d`,
);

export interface CodeScheduleChange {
  name: string;
  action: "created" | "updated" | "unchanged" | "conflict" | "deleted";
  /** Who defined the row found under this name (null when there was none). */
  definedBy: ScheduleSource | null;
  previousHash: string | null;
  previousOwner: string | null;
}

/** Writes declared schedules; see the statement for the rules. */
export async function upsertCodeSchedules(
  db: Queryable,
  sql: SchemaSql,
  definitions: readonly ScheduleDefinition[],
  options: { owner: string; prune: boolean; pruneTasks: readonly string[] | null },
): Promise<CodeScheduleChange[]> {
  const input = definitions.map((d) => ({
    name: d.name,
    cron: d.cron,
    time_zone: d.timeZone,
    task: d.task,
    payload: d.payload,
    queue: d.queue,
    priority: d.priority,
    max_attempts: d.maxAttempts,
    timeout_ms: d.timeoutMs,
    catch_up: d.catchUp,
    catch_up_limit: d.catchUpLimit,
    overlap: d.overlap,
    definition_hash: d.hash,
  }));
  const { rows } = await db.query<{
    name: string;
    action: CodeScheduleChange["action"];
    defined_by: ScheduleSource | null;
    previous_hash: string | null;
    previous_owner: string | null;
  }>({
    ...sql.bind(UPSERT_CODE_SCHEDULES),
    values: [JSON.stringify(input), options.owner, options.prune, options.pruneTasks],
  });
  return rows.map((row) => ({
    name: row.name,
    action: row.action,
    definedBy: row.defined_by,
    previousHash: row.previous_hash,
    previousOwner: row.previous_owner,
  }));
}
