import type { SchemaSql } from "../db/sql.ts";
import type { Queryable } from "../db/types.ts";
import { PgwakeError } from "../errors.ts";
import type { AnyTaskDefinition } from "../tasks.ts";
import {
  defineSchedule,
  type ScheduleDefinition,
  type ScheduleSpec,
  type TaskKnowledge,
} from "./definition.ts";
import { planSchedules } from "./sql/planSchedules.ts";
import { type CodeScheduleChange, upsertCodeSchedules } from "./sql/upsertCodeSchedules.ts";

/** The default group of deployments owning code-defined schedules. */
export const DEFAULT_SCHEDULE_OWNER = "default";
const OWNER = /^[A-Za-z0-9_.:-]{1,128}$/;

/** A schedule declared on a task definition: the task is implied, the name defaults to the task's. */
export type TaskScheduleSpec = Omit<ScheduleSpec, "task" | "name"> & { name?: string };

/**
 * What a task definition may carry to declare its schedules (the lead adds `schedules` to
 * `TaskDefinition`; until then any object with this field works).
 */
export interface TaskWithSchedules {
  name: string;
  schedules?: TaskScheduleSpec | readonly TaskScheduleSpec[];
}

/**
 * The schedules declared on task definitions, as schedule specs. A task with one schedule may
 * leave out its name (it takes the task's); several need names of their own.
 */
export function schedulesOfTasks(
  tasks: Iterable<AnyTaskDefinition | TaskWithSchedules>,
): ScheduleSpec[] {
  const specs: ScheduleSpec[] = [];
  for (const task of tasks) {
    const declared = (task as TaskWithSchedules).schedules;
    if (declared === undefined) continue;
    const list = Array.isArray(declared) ? declared : [declared as TaskScheduleSpec];
    for (const [i, spec] of list.entries()) {
      const name = spec.name ?? (list.length === 1 ? task.name : undefined);
      if (name === undefined) {
        throw new PgwakeError(
          "INVALID_SCHEDULE",
          `task "${task.name}" declares ${list.length} schedules: give each a name (schedule ${i + 1} has none)`,
        );
      }
      specs.push({ ...spec, name, task: task.name });
    }
  }
  return specs;
}

export interface ReconcileOptions extends TaskKnowledge {
  /**
   * The group of deployments these definitions come from (default "default"). Services sharing
   * a schema with different task sets use different owners, so one never deletes the other's.
   */
  owner?: string;
  /** Delete this owner's code schedules that are no longer declared (default true). */
  prune?: boolean;
  /**
   * Delete only those of these tasks (a worker prunes the schedules of the tasks it runs, not
   * another deployment's); default: of any task.
   */
  pruneTasks?: readonly string[];
}

export interface ReconcileResult {
  created: string[];
  /** Rewritten because this deployment declares them differently (or from another owner). */
  updated: Array<{ name: string; previousHash: string | null; previousOwner: string | null }>;
  unchanged: string[];
  deleted: string[];
  /** Declared in code but held by a schedule defined over HTTP, the CLI, SQL or the library. */
  conflicts: Array<{ name: string; definedBy: string }>;
}

/**
 * Makes the database hold the schedules this deployment declares in code (call it at worker
 * start). Rules, also in docs/schedules.md:
 * - Declared and absent: created. Declared and different: rewritten — the last deployment to
 *   start wins, and the change is reported (log it). Equal: nothing is written, so a fleet that
 *   agrees never churns.
 * - A rewrite keeps the schedule's runs, counters and pause state; a changed expression or zone
 *   starts from the next tick after now.
 * - A name already used by a schedule defined another way is never taken over: reported as a
 *   conflict (delete that schedule to let the code own the name).
 * - With `prune` (default), code schedules of this owner that are no longer declared are deleted.
 * Throws INVALID_SCHEDULE (or INVALID_PAYLOAD, UNKNOWN_TASK) before writing anything when a
 * definition is bad, and INVALID_OPTIONS for a bad owner.
 */
export async function reconcileSchedules(
  db: Queryable,
  sql: SchemaSql,
  specs: readonly ScheduleSpec[],
  options: ReconcileOptions = {},
): Promise<ReconcileResult> {
  const owner = options.owner ?? DEFAULT_SCHEDULE_OWNER;
  if (!OWNER.test(owner)) {
    throw new PgwakeError("INVALID_OPTIONS", `invalid schedule owner ${JSON.stringify(owner)}`);
  }
  const definitions: ScheduleDefinition[] = [];
  const seen = new Set<string>();
  for (const spec of specs) {
    const definition = defineSchedule(spec, options);
    if (seen.has(definition.name)) {
      throw new PgwakeError("INVALID_SCHEDULE", `schedule "${definition.name}" is declared twice`, {
        details: [{ path: "name", message: "declared twice", code: "duplicate" }],
      });
    }
    seen.add(definition.name);
    definitions.push(definition);
  }
  const changes = await upsertCodeSchedules(db, sql, definitions, {
    owner,
    prune: options.prune ?? true,
    pruneTasks: options.pruneTasks ?? null,
  });
  const written = changes.filter((c) => c.action === "created" || c.action === "updated");
  if (written.length > 0) {
    await planSchedules(db, sql, { names: written.map((c) => c.name), limit: written.length });
  }
  return summarize(changes);
}

function summarize(changes: CodeScheduleChange[]): ReconcileResult {
  const result: ReconcileResult = {
    created: [],
    updated: [],
    unchanged: [],
    deleted: [],
    conflicts: [],
  };
  for (const change of changes) {
    switch (change.action) {
      case "created":
        result.created.push(change.name);
        break;
      case "updated":
        result.updated.push({
          name: change.name,
          previousHash: change.previousHash,
          previousOwner: change.previousOwner,
        });
        break;
      case "unchanged":
        result.unchanged.push(change.name);
        break;
      case "deleted":
        result.deleted.push(change.name);
        break;
      case "conflict":
        result.conflicts.push({ name: change.name, definedBy: change.definedBy ?? "unknown" });
        break;
    }
  }
  return result;
}
