import { describe, expect, it } from "vitest";
import { PermanentError, PgwakeError, serializeError } from "../../src/index.ts";

describe("serializeError", () => {
  it("keeps an Error's name, message and stack", () => {
    const error = new TypeError("bad input");
    const out = serializeError(error);
    expect(out.name).toBe("TypeError");
    expect(out.message).toBe("bad input");
    expect(out.stack).toContain("bad input");
    expect(out.code).toBeUndefined();
    expect(out.value).toBeUndefined();
  });

  it("keeps a string code (PgwakeError, Node system errors)", () => {
    expect(serializeError(new PgwakeError("JOB_TIMEOUT", "too slow")).code).toBe("JOB_TIMEOUT");
    const sys = Object.assign(new Error("refused"), { code: "ECONNREFUSED" });
    expect(serializeError(sys).code).toBe("ECONNREFUSED");
    const numeric = Object.assign(new Error("n"), { code: 42 });
    expect(serializeError(numeric).code).toBeUndefined();
  });

  it("names PermanentError", () => {
    const out = serializeError(new PermanentError("gone for good"));
    expect(out).toMatchObject({ name: "PermanentError", message: "gone for good" });
  });

  it("uses the name when the message is empty", () => {
    expect(serializeError(new RangeError("")).message).toBe("RangeError");
  });

  it("bounds the stack", () => {
    const error = new Error("deep");
    error.stack = "x".repeat(50_000);
    expect(serializeError(error).stack).toHaveLength(8_000);
  });

  it("is JSON-safe for every Error", () => {
    const error = new Error("with cause", { cause: { big: 1n } });
    const out = serializeError(error);
    expect(JSON.parse(JSON.stringify(out))).toEqual(out);
  });

  it("describes a thrown string", () => {
    const out = serializeError("boom");
    expect(out).toEqual({
      name: "NonErrorThrown",
      message: 'handler threw a non-Error value: "boom"',
      value: "boom",
    });
  });

  it("describes undefined, null and numbers", () => {
    expect(serializeError(undefined)).toMatchObject({
      name: "NonErrorThrown",
      message: "handler threw a non-Error value: undefined",
      value: null,
    });
    expect(serializeError(null)).toMatchObject({
      message: "handler threw a non-Error value: null",
      value: null,
    });
    expect(serializeError(42)).toMatchObject({
      message: "handler threw a non-Error value: 42",
      value: 42,
    });
  });

  it("keeps a thrown plain object as JSON", () => {
    const out = serializeError({ reason: "quota", retryIn: 5 });
    expect(out.value).toEqual({ reason: "quota", retryIn: 5 });
    expect(out.message).toBe('handler threw a non-Error value: {"reason":"quota","retryIn":5}');
  });

  it("survives a circular object", () => {
    const circular: Record<string, unknown> = { name: "loop" };
    circular.self = circular;
    const out = serializeError(circular);
    expect(out.name).toBe("NonErrorThrown");
    expect(out.message).toBe("handler threw a non-Error value: [object Object]");
    expect(out.value).toBe("[object Object]");
    expect(() => JSON.stringify(out)).not.toThrow();
  });

  it("survives a BigInt and a function", () => {
    const big = serializeError(10n);
    expect(big.value).toBe("10");
    expect(() => JSON.stringify(big)).not.toThrow();
    const fn = serializeError(() => 1);
    expect(fn.name).toBe("NonErrorThrown");
    expect(() => JSON.stringify(fn)).not.toThrow();
  });

  it("shortens long descriptions", () => {
    const out = serializeError("y".repeat(10_000));
    expect(out.message.length).toBeLessThan(300);
  });
});

describe("PgwakeError", () => {
  it("carries a code, details and cause", () => {
    const cause = new Error("root");
    const error = new PgwakeError("INVALID_PAYLOAD", "bad", { cause, details: [{ path: "a" }] });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("PgwakeError");
    expect(error.code).toBe("INVALID_PAYLOAD");
    expect(error.details).toEqual([{ path: "a" }]);
    expect(error.cause).toBe(cause);
  });
});
