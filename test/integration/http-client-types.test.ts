import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  CLIENT_TYPES_FILE,
  canonicalDocument,
  clientTypesSource,
  generateClientTypes,
  typeOf,
} from "../../scripts/generate-client-types.ts";

// The client's types are generated from the OpenAPI document; this is the check that the
// committed file is what the generator makes from today's routes.

describe("the generated client types", () => {
  it("are current: src/http-client/api-types.ts is what the generator makes from the routes", async () => {
    const fresh = await generateClientTypes();
    const committed = readFileSync(CLIENT_TYPES_FILE, "utf8");
    // On failure: run `node scripts/generate-client-types.ts` and commit the file.
    expect(committed).toBe(fresh);
  });

  it("notice a change of the document", async () => {
    const doc = await canonicalDocument();
    const before = clientTypesSource(doc);
    const job = doc.components.schemas.Job as { properties: Record<string, unknown> };
    job.properties.note = { type: "string" };
    expect(clientTypesSource(doc)).not.toBe(before);
    expect(clientTypesSource(doc)).toContain("note?: string;");
  });

  it("turn JSON Schema into TypeScript, and refuse keywords they do not know", () => {
    expect(typeOf({ type: ["integer", "null"] })).toBe("number | null");
    expect(typeOf({ anyOf: [{ $ref: "#/components/schemas/Timestamp" }, { type: "null" }] })).toBe(
      "Timestamp | null",
    );
    expect(typeOf({ type: "string", enum: ["a", "b"] })).toBe('"a" | "b"');
    expect(typeOf({ type: "array", items: { type: "boolean" } })).toBe("Array<boolean>");
    expect(typeOf({})).toBe("unknown");
    expect(
      typeOf({
        type: "object",
        properties: { a: { type: "string" }, "b-c": { type: "integer" } },
        required: ["a"],
      }),
    ).toBe('{\na: string;\n"b-c"?: number;\n}');
    expect(typeOf({ type: "object", additionalProperties: { type: "integer" } })).toBe(
      "{\n[key: string]: number;\n}",
    );
    expect(() => typeOf({ type: "object", patternProperties: {} })).toThrow(/patternProperties/);
    expect(() => typeOf({ not: { type: "string" } })).toThrow(/not/);
    expect(() => typeOf({ $ref: "https://example.com/schema" })).toThrow(/\$ref/);
  });
});
