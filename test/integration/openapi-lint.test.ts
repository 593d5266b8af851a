import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiOptions, createApp } from "../../src/api/app.ts";
import { BUILTIN_TASKS } from "../../src/builtin/index.ts";
import { type AnyTaskDefinition, Pgwake } from "../../src/index.ts";

// The generated document under an independent linter: Redocly CLI with scripts/redocly.yaml
// (recommended-strict, so a warning fails too). No database is involved: the document does not
// depend on one.

const run = promisify(execFile);
const CONFIG = new URL("../../scripts/redocly.yaml", import.meta.url).pathname;

interface LintReport {
  totals: { errors: number; warnings: number };
  problems: Array<{ ruleId: string; message: string; location: Array<{ pointer: string }> }>;
}

async function lint(file: string): Promise<LintReport> {
  // redocly exits 1 when it finds problems; its JSON report is on stdout either way.
  const result = await run(
    "npx",
    ["--no-install", "redocly", "lint", file, "--config", CONFIG, "--format", "json"],
    { env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" } },
  ).catch((error: { stdout?: string; stderr?: string }) => error);
  const stdout = result.stdout ?? "";
  const start = stdout.indexOf("{");
  if (start < 0) throw new Error(`no report from redocly: ${result.stderr ?? ""}`);
  return JSON.parse(stdout.slice(start)) as LintReport;
}

describe("the OpenAPI document under Redocly's linter", () => {
  let dir: string;
  const pgwakes: Pgwake[] = [];

  const documentOf = async (
    options: Omit<ApiOptions, "pgwake">,
    tasks: readonly AnyTaskDefinition[] = BUILTIN_TASKS,
  ) => {
    const pgwake = new Pgwake({ connectionString: "postgres://unused@127.0.0.1:1/unused", tasks });
    pgwakes.push(pgwake);
    const res = await createApp({ pgwake, ...options }).request("/openapi.json", {
      headers: { authorization: "Bearer k" },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as Record<string, unknown>;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgwake-openapi-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await Promise.all(pgwakes.map((p) => p.close()));
  });

  const cases: Array<[string, Omit<ApiOptions, "pgwake">, readonly AnyTaskDefinition[]]> = [
    ["keys set", { apiKeys: ["k"] }, BUILTIN_TASKS],
    ["no keys", {}, BUILTIN_TASKS],
    [
      "keys set, docs public, metrics private",
      { apiKeys: ["k"], docsPublic: true, metricsPublic: false },
      BUILTIN_TASKS,
    ],
    ["no known task", { apiKeys: ["k"] }, []],
  ];
  for (const [name, options, tasks] of cases) {
    it(`lints clean with ${name}`, async () => {
      const doc = await documentOf(options, tasks);
      const file = join(dir, `${name.replaceAll(/\W+/g, "-")}.json`);
      await writeFile(file, JSON.stringify(doc, null, 2));
      const report = await lint(file);
      expect(
        report.problems.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`),
      ).toEqual([]);
      expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
    });
  }

  it("fails a document with a defect (the lint can fail)", async () => {
    const doc = await documentOf({ apiKeys: ["k"] });
    type Op = {
      summary?: string;
      responses: Record<string, { content?: Record<string, { example?: unknown }> }>;
    };
    const paths = doc.paths as Record<string, Record<string, Op>>;
    delete paths["/jobs"]!.post!.summary;
    paths["/jobs/{id}"]!.get!.responses["200"]!.content!["application/json"]!.example = {
      id: "one",
    };
    const file = join(dir, "defective.json");
    await writeFile(file, JSON.stringify(doc));
    const report = await lint(file);
    expect([...new Set(report.problems.map((p) => p.ruleId))].sort()).toEqual([
      "no-invalid-media-type-examples",
      "operation-summary",
    ]);
  });
});
