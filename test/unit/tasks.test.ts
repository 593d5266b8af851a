import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  createLogger,
  defineTask,
  defineTaskReference,
  Pgwake,
  PgwakeError,
  TaskRegistry,
} from "../../src/index.ts";

const email = defineTask({
  name: "send-email",
  schema: z.object({ to: z.email(), subject: z.string().default("hello") }),
  handler: async () => null,
  maxAttempts: 3,
});
const free = defineTask({ name: "free.form:v1", handler: () => null });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof PgwakeError ? error.code : "not a PgwakeError";
  }
  return undefined;
}

describe("TaskRegistry", () => {
  it("holds tasks by name", () => {
    const registry = new TaskRegistry([email, free]);
    expect(registry.size).toBe(2);
    expect(registry.names()).toEqual(["send-email", "free.form:v1"]);
    expect(registry.has("send-email")).toBe(true);
    expect(registry.get("send-email")).toBe(email);
    expect(registry.get("nope")).toBeUndefined();
    expect([...registry].map((t) => t.name)).toEqual(["send-email", "free.form:v1"]);
  });

  it("refuses a task defined twice", () => {
    const registry = new TaskRegistry([email]);
    expect(codeOf(() => registry.add({ ...email }))).toBe("INVALID_OPTIONS");
  });

  it.each(["", "has space", "x".repeat(129), "semi;colon", "ünïcode"])(
    "refuses the task name %j",
    (name) => {
      expect(codeOf(() => new TaskRegistry([{ name, handler: () => null }]))).toBe(
        "INVALID_OPTIONS",
      );
    },
  );

  it("parses payloads with the task's schema, applying defaults", () => {
    const registry = new TaskRegistry([email]);
    expect(registry.parsePayload("send-email", { to: "a@example.com" })).toEqual({
      to: "a@example.com",
      subject: "hello",
    });
  });

  it("rejects an invalid payload with the schema's issues", () => {
    const registry = new TaskRegistry([email]);
    let caught: unknown;
    try {
      registry.parsePayload("send-email", { to: "not an address", subject: 5 });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(PgwakeError);
    const error = caught as PgwakeError;
    expect(error.code).toBe("INVALID_PAYLOAD");
    const details = error.details as { path: string; message: string; code: string }[];
    expect(details.map((d) => d.path).sort()).toEqual(["subject", "to"]);
    for (const d of details) {
      expect(typeof d.message).toBe("string");
      expect(typeof d.code).toBe("string");
    }
  });

  it("passes payloads through when the task has no schema", () => {
    const registry = new TaskRegistry([free]);
    const payload = { anything: [1, 2, 3] };
    expect(registry.parsePayload("free.form:v1", payload)).toBe(payload);
  });

  it("says UNKNOWN_TASK for a task it does not know", () => {
    const registry = new TaskRegistry([free]);
    expect(codeOf(() => registry.parsePayload("send-email", {}))).toBe("UNKNOWN_TASK");
  });
});

describe("Pgwake: task names it knows are not defined", () => {
  const invoice = defineTaskReference({
    name: "billing.invoice",
    schema: z.object({ invoiceId: z.int() }),
    queue: "billing",
  });
  // No connection is made: prepare() checks a job before anything is sent.
  const unreachable = "postgres://nobody@127.0.0.1:1/none";

  it("refuses an unknown name with UNKNOWN_TASK, naming the known tasks", () => {
    const pgwake = new Pgwake({ connectionString: unreachable, tasks: [email, invoice] });
    let caught: unknown;
    try {
      pgwake.untyped().prepare({ task: "send-emial", payload: {} });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(PgwakeError);
    expect((caught as PgwakeError).code).toBe("UNKNOWN_TASK");
    expect((caught as PgwakeError).details).toEqual({
      task: "send-emial",
      knownTasks: ["billing.invoice", "send-email"],
    });
    void pgwake.close();
  });

  it("validates a referenced task's payload and applies its defaults; a worker never gets it", () => {
    const pgwake = new Pgwake({ connectionString: unreachable, tasks: [email, invoice] });
    expect(pgwake.prepare({ task: "billing.invoice", payload: { invoiceId: 7 } })).toMatchObject({
      queue: "billing",
      payload: { invoiceId: 7 },
    });
    expect(codeOf(() => pgwake.prepare({ task: "billing.invoice", payload: {} }))).toBe(
      "INVALID_PAYLOAD",
    );
    expect(pgwake.tasks.names()).toEqual(["send-email"]);
    expect(pgwake.knowsTask("billing.invoice")).toBe(true);
    void pgwake.close();
  });

  it("warns once per name and accepts it with unknownTasks: warn", () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger(
      { level: "warn" },
      { write: (line: string) => lines.push(JSON.parse(line)) },
    );
    const pgwake = new Pgwake({
      connectionString: unreachable,
      tasks: [email],
      unknownTasks: "warn",
      logger,
    });
    const job = pgwake.untyped().prepare({ task: "elsewhere", payload: { a: 1 } });
    pgwake.untyped().prepare({ task: "elsewhere" });
    expect(job).toMatchObject({ task: "elsewhere", payload: { a: 1 } });
    expect(lines.filter((l) => l.task === "elsewhere")).toHaveLength(1);
    void pgwake.close();
  });

  it("accepts any name when it knows no task at all", () => {
    const pgwake = new Pgwake({ connectionString: unreachable });
    expect(pgwake.prepare({ task: "anything" })).toEqual({ task: "anything" });
    void pgwake.close();
  });

  it("refuses a task defined twice, as a task and as a reference", () => {
    const twin = defineTaskReference({ name: "send-email" });
    expect(codeOf(() => new Pgwake({ connectionString: unreachable, tasks: [email, twin] }))).toBe(
      "INVALID_OPTIONS",
    );
  });
});
