import type { z } from "zod";
import { PgwakeError } from "./errors.ts";
import type { BackoffOptions } from "./jobs/backoff.ts";
import type { Job } from "./jobs/types.ts";
import type { Logger } from "./logger.ts";

/** What a handler gets besides its payload. */
export interface JobContext {
  /** The job as claimed (attempt already counted). */
  readonly job: Job;
  /** 1 on the first run, 2 on the first retry, … */
  readonly attempt: number;
  readonly workerId: string;
  /** Fires on timeout, cancellation, lost lease and forced shutdown; `reason` says which. */
  readonly signal: AbortSignal;
  /** A logger bound to the job (job id, task, queue, attempt, worker id). */
  readonly logger: Logger;
  /** Records a `log` event on the job, visible in its timeline. */
  log(message: string, data?: unknown): void;
}

export type TaskHandler<Payload> = (payload: Payload, ctx: JobContext) => unknown;

/** A task: a name, how to check its payload, how to run it and its defaults. */
export interface TaskDefinition<Payload = unknown> {
  name: string;
  /** Checks payloads at enqueue (when the task is known there) and again before each run. */
  schema?: z.ZodType<Payload>;
  handler: TaskHandler<Payload>;
  /** Defaults applied at enqueue when the caller gives none. */
  queue?: string;
  priority?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  backoff?: Partial<BackoffOptions>;
  /** An example payload, shown in the API documentation. */
  example?: Payload;
}

/** A task of any payload type (handlers are contravariant in their payload). */
// biome-ignore lint/suspicious/noExplicitAny: the registry holds tasks of every payload type
export type AnyTaskDefinition = TaskDefinition<any>;

/** Declares a task with a typed payload. */
export function defineTask<Payload>(definition: TaskDefinition<Payload>): TaskDefinition<Payload> {
  return definition;
}

const TASK_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

/** The tasks a process knows: the worker runs them, the API and client validate against them. */
export class TaskRegistry {
  private readonly tasks = new Map<string, TaskDefinition<unknown>>();

  constructor(definitions: Iterable<AnyTaskDefinition> = []) {
    for (const definition of definitions) this.add(definition);
  }

  add(definition: AnyTaskDefinition): this {
    if (!TASK_NAME.test(definition.name)) {
      throw new PgwakeError(
        "INVALID_OPTIONS",
        `invalid task name ${JSON.stringify(definition.name)}`,
      );
    }
    if (this.tasks.has(definition.name)) {
      throw new PgwakeError("INVALID_OPTIONS", `task "${definition.name}" is defined twice`);
    }
    this.tasks.set(definition.name, definition);
    return this;
  }

  get(name: string): TaskDefinition<unknown> | undefined {
    return this.tasks.get(name);
  }

  has(name: string): boolean {
    return this.tasks.has(name);
  }

  names(): string[] {
    return [...this.tasks.keys()];
  }

  get size(): number {
    return this.tasks.size;
  }

  [Symbol.iterator](): IterableIterator<TaskDefinition<unknown>> {
    return this.tasks.values();
  }

  /**
   * Parses a payload with the task's schema. Throws INVALID_PAYLOAD with the schema's issues,
   * or UNKNOWN_TASK when the task is not defined here.
   */
  parsePayload(name: string, payload: unknown): unknown {
    const task = this.tasks.get(name);
    if (!task) throw new PgwakeError("UNKNOWN_TASK", `unknown task "${name}"`);
    if (!task.schema) return payload;
    const parsed = task.schema.safeParse(payload);
    if (!parsed.success) {
      throw new PgwakeError("INVALID_PAYLOAD", `invalid payload for task "${name}"`, {
        details: parsed.error.issues.map((issue) => ({
          path: issue.path.map(String).join("."),
          message: issue.message,
          code: issue.code,
        })),
      });
    }
    return parsed.data;
  }
}
