import type { z } from "zod";
import { PgwakeError } from "./errors.ts";
import type { BackoffOptions } from "./jobs/backoff.ts";
import type { QueueLimits } from "./jobs/flowControl.ts";
import type { Job } from "./jobs/types.ts";
import type { Logger } from "./logger.ts";
import type { TaskScheduleSpec } from "./schedules/reconcile.ts";

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

/**
 * A task: a name, how to check its payload, how to run it and its defaults. `Payload` is what
 * the handler gets (the schema's output), `Input` what a submitter sends (the schema's input:
 * fields with defaults may be left out) and `Name` the task's name, kept as a literal type so
 * that `Pgwake` can type `enqueue` by task.
 */
export interface TaskDefinition<Payload = unknown, Name extends string = string, Input = Payload> {
  name: Name;
  /** Checks payloads at enqueue (when the task is known there) and again before each run. */
  schema?: z.ZodType<Payload, Input>;
  handler: TaskHandler<Payload>;
  /** Defaults applied at enqueue when the caller gives none. */
  queue?: string;
  priority?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  backoff?: Partial<BackoffOptions>;
  /**
   * The concurrency key of a job submitted without one (flow control), from its checked payload:
   * `(p) => p.tenantId`. Undefined or null: no key.
   */
  concurrencyKey?: (payload: Payload) => string | null | undefined;
  /**
   * Default limits of the task's queue, set by workers running this task as they start; limits
   * an operator set (HTTP, CLI, SQL, `setQueueLimits`) win. Tasks sharing a queue must agree.
   */
  queueLimits?: QueueLimits;
  /**
   * Cron schedules that make jobs of this task (docs/schedules.md): `{ cron: "0 3 * * *",
   * timeZone: "Europe/Berlin", payload: {…} }`. Workers running the task keep the database's
   * schedules in step with these as they start. One schedule may leave out its name (it takes
   * the task's); several need their own.
   */
  schedules?: TaskScheduleSpec | readonly TaskScheduleSpec[];
  /** An example payload, shown in the API documentation. */
  example?: Input;
}

/** A task of any payload type (handlers are contravariant in their payload). */
// biome-ignore lint/suspicious/noExplicitAny: the registry holds tasks of every payload type
export type AnyTaskDefinition = TaskDefinition<any, string, any>;

/**
 * Declares a task; its name and payload types are inferred (from the schema, else from the
 * handler's parameter), so a `Pgwake` given it types `enqueue("its-name", payload)`.
 */
export function defineTask<const Name extends string, Schema extends z.ZodType>(
  definition: TaskDefinition<z.output<Schema>, Name, z.input<Schema>> & { schema: Schema },
): TaskDefinition<z.output<Schema>, Name, z.input<Schema>>;
export function defineTask<Payload, const Name extends string = string>(
  definition: TaskDefinition<Payload, Name>,
): TaskDefinition<Payload, Name>;
export function defineTask(definition: AnyTaskDefinition): AnyTaskDefinition {
  return definition;
}

/**
 * A task that another process runs: what a producer needs to submit it (its name, optionally its
 * schema and defaults), without a handler. Listed in `Pgwake`'s `tasks`, it is typed and known
 * like a local task; a worker never claims it.
 */
export interface TaskReference<Payload = unknown, Name extends string = string, Input = Payload> {
  name: Name;
  schema?: z.ZodType<Payload, Input>;
  queue?: string;
  priority?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  concurrencyKey?: (payload: Payload) => string | null | undefined;
  handler?: undefined;
}

// biome-ignore lint/suspicious/noExplicitAny: references of every payload type
export type AnyTaskReference = TaskReference<any, string, any>;

/**
 * Declares a task run elsewhere. With a schema its payload type is inferred; without one, name
 * the types: `defineTaskReference<{ invoiceId: number }, "billing.invoice">({ name: "billing.invoice" })`.
 */
export function defineTaskReference<const Name extends string, Schema extends z.ZodType>(
  reference: TaskReference<z.output<Schema>, Name, z.input<Schema>> & { schema: Schema },
): TaskReference<z.output<Schema>, Name, z.input<Schema>>;
export function defineTaskReference<Payload = unknown, const Name extends string = string>(
  reference: TaskReference<Payload, Name>,
): TaskReference<Payload, Name>;
export function defineTaskReference(reference: AnyTaskReference): AnyTaskReference {
  return reference;
}

/** What `Pgwake`'s `tasks` option takes: local tasks and references to tasks run elsewhere. */
export type KnownTask = AnyTaskDefinition | AnyTaskReference;

/** The payload a submitter sends for a task (its schema's input). */
export type TaskInput<T> =
  T extends TaskDefinition<infer _P, infer _N, infer I>
    ? I
    : T extends TaskReference<infer _P, infer _N, infer I>
      ? I
      : unknown;

/** The payload a task's handler gets (its schema's output). */
export type TaskPayload<T> =
  T extends TaskDefinition<infer P, infer _N, infer _I>
    ? P
    : T extends TaskReference<infer P, infer _N, infer _I>
      ? P
      : unknown;

/**
 * Task name → submitted payload, for a list of tasks; `Record<string, unknown>` when the names
 * are not known at compile time (a list typed `AnyTaskDefinition[]`, a `TaskRegistry`).
 */
export type TaskPayloads<Tasks extends readonly KnownTask[]> = string extends Tasks[number]["name"]
  ? Record<string, unknown>
  : { [T in Tasks[number] as T["name"]]: TaskInput<T> };

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
