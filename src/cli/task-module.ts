import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { builtinTasksOf } from "../builtin/index.ts";
import type { Config } from "../config.ts";
import { PgwakeError } from "../errors.ts";
import { type AnyTaskDefinition, TaskRegistry } from "../tasks.ts";
import { CommandError, UsageError } from "./errors.ts";

/** Whether a value looks like a task definition (what `defineTask` returns). */
export function isTaskDefinition(value: unknown): value is AnyTaskDefinition {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { name?: unknown }).name === "string" &&
    typeof (value as { handler?: unknown }).handler === "function"
  );
}

/**
 * The task definitions a module exports: its default export (an array of tasks, or one task) and
 * every named export that is a task or an array of tasks. The same object exported twice counts
 * once. TypeScript modules load as they are: Node strips the types.
 */
export async function loadTaskModule(path: string): Promise<AnyTaskDefinition[]> {
  if (!existsSync(path)) throw new UsageError(`tasks module not found: ${path}`);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    throw new CommandError(`cannot load tasks module ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const found = new Set<AnyTaskDefinition>();
  for (const value of Object.values(module)) {
    const candidates = Array.isArray(value) ? value : [value];
    for (const candidate of candidates) if (isTaskDefinition(candidate)) found.add(candidate);
  }
  if (found.size === 0) {
    throw new UsageError(
      `tasks module ${path} exports no task definitions (export default [task, …] or named tasks made with defineTask)`,
    );
  }
  return [...found];
}

/** The built-in tasks turned on and the configured module's tasks. */
export async function buildRegistry(
  config: Pick<Config, "builtinTasks" | "tasks">,
): Promise<TaskRegistry> {
  const registry = new TaskRegistry(builtinTasksOf(config.builtinTasks));
  const own = config.tasks ? await loadTaskModule(config.tasks) : [];
  try {
    for (const task of own) registry.add(task);
  } catch (error) {
    const hint =
      config.builtinTasks.length > 0
        ? " (a built-in has that name? PGWAKE_BUILTIN_TASKS=none leaves them out)"
        : "";
    if (error instanceof PgwakeError) throw new UsageError(`${error.message}${hint}`);
    throw error;
  }
  return registry;
}
