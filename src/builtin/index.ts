import type { BuiltinGroup } from "../settings.ts";
import type { AnyTaskDefinition } from "../tasks.ts";
import { demoEcho, demoFail, demoSleep } from "./demo.ts";
import { httpRequest } from "./http-request.ts";

export { demoEcho, demoFail, demoSleep } from "./demo.ts";
export {
  HttpRequestError,
  type HttpRequestPayload,
  type HttpRequestResult,
  httpRequest,
  MAX_BODY_BYTES,
} from "./http-request.ts";

/**
 * The built-in tasks by group, turned on one group at a time with PGWAKE_BUILTIN_TASKS (default
 * `demo`). `http` is off unless asked for: `http.request` calls whatever URL a submitter gives
 * it, internal addresses included.
 */
export const BUILTIN_TASK_GROUPS: Readonly<Record<BuiltinGroup, readonly AnyTaskDefinition[]>> = {
  demo: [demoEcho, demoSleep, demoFail],
  http: [httpRequest],
};

/** Every built-in task. */
export const BUILTIN_TASKS: readonly AnyTaskDefinition[] = [
  ...BUILTIN_TASK_GROUPS.http,
  ...BUILTIN_TASK_GROUPS.demo,
];

/** The built-in tasks of these groups. */
export function builtinTasksOf(groups: readonly BuiltinGroup[]): AnyTaskDefinition[] {
  return groups.flatMap((group) => BUILTIN_TASK_GROUPS[group]);
}
