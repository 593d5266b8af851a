import { describe, expect, it } from "vitest";
import { z } from "zod";
import { defineTask, PgwakeError, TaskRegistry } from "../../src/index.ts";

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
