// Compile-time tests of typed enqueue: `npm run typecheck` (tsc) fails if a wrong task name or a
// wrong payload compiles (each `@ts-expect-error` below then has no error to expect), or if a
// right call does not. Nothing here runs: every call sits in a function that is never called.
import { z } from "zod";
import {
  defineTask,
  defineTaskReference,
  type EnqueuedJob,
  type PayloadsOf,
  Pgwake,
  TaskRegistry,
} from "../../src/index.ts";

const sendEmail = defineTask({
  name: "send-email",
  schema: z.object({ to: z.email(), subject: z.string().default("hello") }),
  handler: (payload) => payload.to.length,
});
const resize = defineTask({
  name: "resize",
  handler: (payload: { width: number; height: number }) => payload.width * payload.height,
});
const ping = defineTask({ name: "ping", handler: () => "pong" });
const invoice = defineTaskReference({
  name: "billing.invoice",
  schema: z.object({ invoiceId: z.int() }),
});
const audit = defineTaskReference<{ action: string }, "audit.write">({ name: "audit.write" });

declare const url: string;

export function typedByTheTaskList(): void {
  const pgwake = new Pgwake({ connectionString: url, tasks: [sendEmail, resize, ping, invoice] });

  void pgwake.enqueue("send-email", { to: "a@example.com" });
  void pgwake.enqueue("send-email", { to: "a@example.com", subject: "hi" }, { priority: 1 });
  void pgwake.enqueue("resize", { width: 1, height: 2 });
  void pgwake.enqueue("ping");
  void pgwake.enqueue("billing.invoice", { invoiceId: 7 });

  // @ts-expect-error a task name that is not in the list
  void pgwake.enqueue("send-emial", { to: "a@example.com" });
  // @ts-expect-error a payload of the wrong shape
  void pgwake.enqueue("send-email", { to: 42 });
  // @ts-expect-error a required field left out
  void pgwake.enqueue("resize", { width: 1 });
  // @ts-expect-error a payload is required when {} is not a valid one
  void pgwake.enqueue("send-email");
  // @ts-expect-error a referenced task's payload is typed too
  void pgwake.enqueue("billing.invoice", { invoiceId: "7" });
  // @ts-expect-error another task's payload
  void pgwake.enqueue("resize", { to: "a@example.com" });

  void pgwake.enqueueMany([
    { task: "send-email", payload: { to: "a@example.com" } },
    { task: "ping" },
  ]);
  // @ts-expect-error a wrong payload in a batch
  void pgwake.enqueueMany([{ task: "resize", payload: { width: "1", height: 2 } }]);
  // @ts-expect-error a wrong name in a batch
  void pgwake.enqueueMany([{ task: "nope" }]);

  // The job comes back with the handler's payload type (the schema's output: defaults applied).
  const sent: Promise<EnqueuedJob<{ to: string; subject: string }>> = pgwake.enqueue("send-email", {
    to: "a@example.com",
  });
  void sent;

  // Escape hatch: a name known only at run time (still checked against the tasks at enqueue).
  const fromConfig: string = "resize";
  void pgwake.untyped().enqueue(fromConfig, { width: 1, height: 1 });

  const payloads: PayloadsOf<typeof pgwake> = {
    "send-email": { to: "a@example.com" },
    resize: { width: 1, height: 1 },
    ping: undefined,
    "billing.invoice": { invoiceId: 1 },
  };
  void payloads;
}

export function referencesWithoutSchema(): void {
  const pgwake = new Pgwake({ connectionString: url, tasks: [audit] });
  void pgwake.enqueue("audit.write", { action: "login" });
  // @ts-expect-error the reference names its payload type
  void pgwake.enqueue("audit.write", { action: 1 });
}

export function untypedWithoutAList(): void {
  // No task list (or a registry, or tasks typed only as AnyTaskDefinition): any name, any payload.
  const producer = new Pgwake({ connectionString: url });
  void producer.enqueue("anything", { at: "all" });
  void producer.enqueue("no-payload");
  void producer.enqueueMany([{ task: "x", payload: 1 }]);
  const registry = new Pgwake({ connectionString: url, tasks: new TaskRegistry([sendEmail]) });
  void registry.enqueue("whatever", 1);
}
