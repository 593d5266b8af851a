/**
 * Generates `src/http-client/api-types.ts`, the types of the typed HTTP client, from the OpenAPI
 * document the API serves (the one generated from its routes).
 *
 *   node scripts/generate-client-types.ts           write the file
 *   node scripts/generate-client-types.ts --check   exit 1 when the file is stale (for CI)
 *
 * openapi-typescript needs the TypeScript 5 compiler API, and this project uses TypeScript 7, so
 * this is a small generator of its own. It knows exactly the JSON Schema the document uses and
 * refuses any other keyword, so a new kind of schema cannot silently become `unknown`.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { createApp } from "../src/api/app.ts";
import { BUILTIN_TASKS } from "../src/builtin/index.ts";
import { Pgwake } from "../src/client.ts";

/** Where the generated types live. */
export const CLIENT_TYPES_FILE = fileURLToPath(
  new URL("../src/http-client/api-types.ts", import.meta.url),
);

type JsonSchema = Record<string, unknown>;
type Document = {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, JsonSchema> };
};
type Operation = {
  operationId: string;
  summary?: string;
  parameters?: Array<{
    name: string;
    in: string;
    required?: boolean;
    schema: JsonSchema;
    description?: string;
  }>;
  requestBody?: { required?: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { content?: Record<string, { schema?: JsonSchema }> }>;
};

/**
 * The document the types are generated from: the API with API keys set (so auth failures are
 * documented), the built-in tasks and default limits. No database is touched.
 */
export async function canonicalDocument(): Promise<Document> {
  const pgwake = new Pgwake({
    connectionString: "postgres://unused@127.0.0.1:1/unused",
    tasks: BUILTIN_TASKS,
  });
  try {
    const app = createApp({ pgwake, apiKeys: ["generator"] });
    const res = await app.request("/openapi.json", {
      headers: { authorization: "Bearer generator" },
    });
    if (res.status !== 200) throw new Error(`/openapi.json answered ${res.status}`);
    return (await res.json()) as Document;
  } finally {
    await pgwake.close();
  }
}

// Keywords that only constrain values (checked by the server), with no effect on the type.
const VALUE_KEYWORDS = new Set([
  "description",
  "example",
  "examples",
  "format",
  "pattern",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "default",
  "title",
]);
const TYPE_KEYWORDS = new Set([
  "type",
  "$ref",
  "anyOf",
  "oneOf",
  "allOf",
  "enum",
  "const",
  "items",
  "properties",
  "required",
  "additionalProperties",
]);

/** The TypeScript type of a JSON schema. */
export function typeOf(schema: JsonSchema | boolean): string {
  if (schema === true) return "unknown";
  if (schema === false) return "never";
  for (const keyword of Object.keys(schema)) {
    if (!VALUE_KEYWORDS.has(keyword) && !TYPE_KEYWORDS.has(keyword)) {
      throw new Error(`unsupported JSON Schema keyword "${keyword}" in ${JSON.stringify(schema)}`);
    }
  }
  if (typeof schema.$ref === "string") return refName(schema.$ref);
  const union = (schema.anyOf ?? schema.oneOf) as JsonSchema[] | undefined;
  if (union) return union.map((part) => wrap(typeOf(part))).join(" | ");
  if (schema.allOf) return (schema.allOf as JsonSchema[]).map((p) => wrap(typeOf(p))).join(" & ");
  if ("const" in schema) return JSON.stringify(schema.const);
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  const type = schema.type;
  if (Array.isArray(type)) {
    return type.map((t) => wrap(typeOf({ ...schema, type: t }))).join(" | ");
  }
  switch (type) {
    case undefined:
      return "unknown";
    case "string":
      return "string";
    case "integer":
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "null":
      return "null";
    case "array":
      return `Array<${typeOf((schema.items as JsonSchema | undefined) ?? true)}>`;
    case "object":
      return objectType(schema);
    default:
      throw new Error(`unsupported type ${JSON.stringify(type)}`);
  }
}

function objectType(schema: JsonSchema): string {
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((schema.required ?? []) as string[]);
  const lines = Object.entries(properties).map(([name, property]) => {
    const optional = required.has(name) ? "" : "?";
    return `${doc(property.description)}${key(name)}${optional}: ${typeOf(property)};`;
  });
  const extra = schema.additionalProperties;
  if (extra !== undefined && extra !== false) {
    const value = typeOf(extra as JsonSchema | boolean);
    lines.push(`[key: string]: ${lines.length > 0 ? "unknown" : value};`);
  }
  return lines.length === 0 ? "Record<string, never>" : `{\n${lines.join("\n")}\n}`;
}

function refName(ref: string): string {
  const match = /^#\/components\/schemas\/([A-Za-z][A-Za-z0-9]*)$/.exec(ref);
  if (!match) throw new Error(`unsupported $ref ${ref}`);
  return match[1]!;
}

function wrap(type: string): string {
  return /^[\w."<>[\], ]+$/.test(type) && !type.includes(" | ") ? type : `(${type})`;
}

function key(name: string): string {
  return /^([A-Za-z_$][\w$]*|[1-9]\d*)$/.test(name) ? name : JSON.stringify(name);
}

function doc(text: unknown): string {
  if (typeof text !== "string" || text === "") return "";
  return `/** ${text.replaceAll("*/", "*\\/").replaceAll("\n", " ")} */\n`;
}

/** Parameters of one location (path, query, header) as an object type. */
function parametersType(operation: Operation, location: string): string {
  const parameters = (operation.parameters ?? []).filter((p) => p.in === location);
  if (parameters.length === 0) return "Record<string, never>";
  const lines = parameters.map(
    (p) => `${doc(p.description)}${key(p.name)}${p.required ? "" : "?"}: ${typeOf(p.schema)};`,
  );
  return `{\n${lines.join("\n")}\n}`;
}

function responseType(response: Operation["responses"][string]): string {
  const content = response.content ?? {};
  const json = content["application/json"];
  if (json?.schema) return typeOf(json.schema);
  return Object.keys(content).length > 0 ? "string" : "undefined";
}

/** The source of the types file (before formatting). */
export function clientTypesSource(document: Document): string {
  const out: string[] = [
    "// Generated by scripts/generate-client-types.ts from the OpenAPI document of the pgwake",
    "// API. Do not edit: change the routes or their schemas, then run",
    "// `node scripts/generate-client-types.ts`. A test fails while this file is stale.",
    "",
  ];
  const schemas = Object.entries(document.components.schemas).sort(([a], [b]) =>
    a.localeCompare(b),
  );
  for (const [name, schema] of schemas) {
    out.push(`${doc(schema.description)}export type ${name} = ${typeOf(schema)};`, "");
  }
  const operations: string[] = [];
  const table: string[] = [];
  for (const [path, methods] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const body = operation.requestBody?.content["application/json"]?.schema;
      const responses = Object.entries(operation.responses).map(
        ([status, response]) => `${key(status)}: ${responseType(response)};`,
      );
      operations.push(
        `${doc(operation.summary)}${operation.operationId}: {`,
        `method: ${JSON.stringify(method.toUpperCase())};`,
        `path: ${JSON.stringify(path)};`,
        `params: ${parametersType(operation, "path")};`,
        `query: ${parametersType(operation, "query")};`,
        `headers: ${parametersType(operation, "header")};`,
        `body: ${body ? typeOf(body) : "undefined"};`,
        `bodyRequired: ${operation.requestBody?.required === true};`,
        `responses: {\n${responses.join("\n")}\n};`,
        "};",
      );
      table.push(
        `${operation.operationId}: { method: ${JSON.stringify(method.toUpperCase())}, path: ${JSON.stringify(path)} },`,
      );
    }
  }
  out.push(
    "/** Every operation of the API: its method, path, parameters, body and answers by status. */",
    "export interface Operations {",
    ...operations,
    "}",
    "",
    "/** The method and path of every operation. */",
    "export const OPERATIONS = {",
    ...table,
    '} as const satisfies { [K in keyof Operations]: Pick<Operations[K], "method" | "path"> };',
    "",
  );
  return out.join("\n");
}

/** Formats TypeScript source as the project's Biome settings do. */
export function formatSource(source: string, filePath: string): string {
  const biome = createRequire(import.meta.url).resolve("@biomejs/biome/bin/biome");
  const result = spawnSync(process.execPath, [biome, "format", `--stdin-file-path=${filePath}`], {
    input: source,
    encoding: "utf8",
    cwd: fileURLToPath(new URL("..", import.meta.url)),
  });
  if (result.status !== 0) throw new Error(`biome format failed: ${result.stderr}`);
  return result.stdout;
}

/** The file as it should be now. */
export async function generateClientTypes(): Promise<string> {
  return formatSource(clientTypesSource(await canonicalDocument()), CLIENT_TYPES_FILE);
}

async function main(): Promise<void> {
  const fresh = await generateClientTypes();
  let current = "";
  try {
    current = readFileSync(CLIENT_TYPES_FILE, "utf8");
  } catch {
    // Not generated yet.
  }
  if (process.argv.includes("--check")) {
    if (current !== fresh) {
      console.error(
        `${CLIENT_TYPES_FILE} is stale: run \`node scripts/generate-client-types.ts\` and commit it`,
      );
      process.exitCode = 1;
    }
    return;
  }
  if (current !== fresh) writeFileSync(CLIENT_TYPES_FILE, fresh);
  console.log(`${current === fresh ? "unchanged" : "wrote"} ${CLIENT_TYPES_FILE}`);
}

if (import.meta.main) await main();
