import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../../src/api/app.ts";
import { TIMESTAMP_PATTERN } from "../../src/api/schemas.ts";
import { type ApiServer, serveApi } from "../../src/api/server.ts";
import { defineTask } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

const CHROMIUM = "/usr/bin/chromium";

interface Parameter {
  name: string;
  in: string;
  schema: Record<string, unknown>;
}
interface Operation {
  operationId?: string;
  security?: Array<Record<string, string[]>>;
  parameters?: Parameter[];
  responses?: Record<
    string,
    { content?: Record<string, { schema?: unknown; example?: unknown; examples?: unknown }> }
  >;
  requestBody?: {
    content: Record<string, { example?: unknown; examples?: Record<string, { value: unknown }> }>;
  };
}
interface Document {
  openapi: string;
  servers?: Array<{ url: string }>;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Record<string, unknown>> };
}

describe("OpenAPI document and Swagger UI", () => {
  let db: TestDb;
  let app: ReturnType<typeof createApp>;
  let server: ApiServer;
  let secured: ApiServer;

  beforeAll(async () => {
    const task = defineTask({
      name: "send-email",
      schema: z.object({ to: z.email() }),
      handler: () => {},
      example: { to: "ada@example.com" },
    });
    db = await createTestDb("api_docs", { tasks: [task] });
    app = createApp({ pgwake: db.pgwake });
    server = await serveApi(app, { port: 0 });
    secured = await serveApi(createApp({ pgwake: db.pgwake, apiKeys: ["docs-key"] }), { port: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await secured?.close();
    await db.close();
  });

  type Fetcher = (path: string, init?: RequestInit) => Response | Promise<Response>;
  const local: Fetcher = (path, init) => app.request(path, init);
  const documentOf = async (fetcher: Fetcher, key?: string) => {
    const res = await fetcher(
      "/openapi.json",
      key ? { headers: { authorization: `Bearer ${key}` } } : {},
    );
    expect(res.status).toBe(200);
    return (await res.json()) as Document;
  };
  const operations = (doc: Document) =>
    Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => ({ where: `${method} ${path}`, path, op })),
    );

  it("is OpenAPI 3.1 and documents every route of the app, each operation with responses and examples", async () => {
    const doc = await documentOf(local);
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.servers).toEqual([expect.objectContaining({ url: "/" })]);
    const routes = new Set(
      app.routes
        .filter((r) => r.method !== "ALL")
        .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z]+)/g, "{$1}")}`),
    );
    expect(routes.size).toBeGreaterThanOrEqual(16);
    const documented = new Set(operations(doc).map((o) => o.where));
    expect([...routes].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((r) => !routes.has(r))).toEqual([]);
    const operationIds = new Set<string>();
    for (const { where, op } of operations(doc)) {
      expect(op.operationId, where).toBeTruthy();
      expect(operationIds.has(op.operationId!), where).toBe(false);
      operationIds.add(op.operationId!);
      const responses = Object.entries(op.responses ?? {});
      expect(responses.length, where).toBeGreaterThan(0);
      // Every path answers 405 for the methods it does not take, and says so.
      expect(Object.keys(op.responses ?? {}), where).toContain("405");
      for (const [status, response] of responses) {
        const media = Object.values(response.content ?? {});
        expect(media.length, `${where} ${status}`).toBeGreaterThan(0);
        for (const m of media) expect(m.example ?? m.examples, `${where} ${status}`).toBeDefined();
      }
      if (op.requestBody) {
        for (const m of Object.values(op.requestBody.content))
          expect(m.example ?? m.examples, where).toBeDefined();
      }
    }
    // Every $ref points at a schema that is there.
    const refs = [
      ...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g),
    ].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) expect(doc.components.schemas[ref], ref).toBeDefined();
    // The submission schema is the one the route validates with (strict, with its bounds).
    expect(doc.components.schemas.SubmitJob).toMatchObject({
      additionalProperties: false,
      required: ["task"],
      properties: { priority: { minimum: -1000, maximum: 1000 } },
    });
  });

  it("fixes the drift the hand-written document had", async () => {
    const doc = await documentOf(local);
    const schemaOf = (path: string, method: string, status: string) =>
      doc.paths[path]![method]!.responses![status]!.content!["application/json"]!.schema;
    // retry answers { job }, not the cancel schema's { job, was }.
    expect(schemaOf("/jobs/{id}/retry", "post", "200")).toEqual({
      $ref: "#/components/schemas/RetryResult",
    });
    expect(doc.components.schemas.RetryResult).toMatchObject({ required: ["job"] });
    // /openapi.json is an object.
    expect(schemaOf("/openapi.json", "get", "200")).toEqual({
      $ref: "#/components/schemas/OpenApiDocument",
    });
    expect(doc.components.schemas.OpenApiDocument).toMatchObject({ type: "object" });
    // Ids, limits and cursors are integers, like Job.id and nextCursor.
    for (const { where, op } of operations(doc)) {
      for (const p of op.parameters ?? []) {
        if (["id", "limit", "cursor"].includes(p.name)) {
          expect(p.schema, `${where} ${p.name}`).toMatchObject({ type: "integer", minimum: 1 });
        }
      }
    }
    expect(doc.components.schemas.JobPage).toMatchObject({
      properties: { nextCursor: { type: ["integer", "null"] } },
    });
    // Every time, lastSeenAt included, is the one Timestamp: toISOString's format.
    expect(doc.components.schemas.QueueWorker).toMatchObject({
      properties: { lastSeenAt: { $ref: "#/components/schemas/Timestamp" } },
    });
    expect(doc.components.schemas.Timestamp!.pattern).toBe(TIMESTAMP_PATTERN.source);
    expect(new Date().toISOString()).toMatch(new RegExp(TIMESTAMP_PATTERN.source));
  });

  it("gives examples that submit a task the server knows", async () => {
    const doc = await documentOf(local);
    const media = doc.paths["/jobs"]!.post!.requestBody!.content["application/json"]!;
    const tasks = Object.values(media.examples!).map((e) => (e.value as { task: string }).task);
    expect(tasks.length).toBeGreaterThanOrEqual(3);
    expect(new Set(tasks)).toEqual(new Set(["send-email"]));
    expect(Object.values(media.examples!)[0]!.value).toEqual({
      task: "send-email",
      payload: { to: "ada@example.com" },
    });
  });

  it("declares security per operation as the server enforces it", async () => {
    const open = await documentOf(local);
    for (const { where, op } of operations(open)) expect(op.security, where).toEqual([]);
    expect(JSON.stringify(open)).not.toContain("securitySchemes");

    const doc = await documentOf((p, i) => fetch(`${secured.url}${p}`, i), "docs-key");
    const publicOps = operations(doc)
      .filter(({ op }) => op.security?.length === 0)
      .map((o) => o.where)
      .sort();
    expect(publicOps).toEqual([
      "get /docs",
      "get /docs/{file}",
      "get /health",
      "get /metrics",
      "get /ready",
    ]);
    for (const { where, op } of operations(doc)) {
      if (op.security?.length === 0) continue;
      expect(op.security, where).toEqual([{ bearer: [] }]);
      expect(Object.keys(op.responses ?? {}), where).toEqual(
        expect.arrayContaining(["401", "403"]),
      );
    }
  });

  it("serves /docs to a browser without a key, and /openapi.json only with one unless docs are public", async () => {
    const page = await fetch(`${secured.url}/docs`, { headers: { accept: "text/html" } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('id="pgwake-key"');
    expect((await fetch(`${secured.url}/docs/swagger-ui-bundle.js`)).status).toBe(200);
    expect((await fetch(`${secured.url}/openapi.json`)).status).toBe(401);
    const open = await serveApi(
      createApp({ pgwake: db.pgwake, apiKeys: ["docs-key"], docsPublic: true }),
      { port: 0 },
    );
    try {
      expect((await fetch(`${open.url}/openapi.json`)).status).toBe(200);
      expect((await fetch(`${open.url}/jobs`)).status).toBe(401);
    } finally {
      await open.close();
    }
  });

  const withBrowser = async (
    ctx: { skip: () => void },
    run: (browser: import("playwright-core").Browser) => Promise<void>,
  ) => {
    if (!existsSync(CHROMIUM)) {
      console.warn(
        `SKIPPED /docs browser test: ${CHROMIUM} is missing (apt-get install -y chromium)`,
      );
      ctx.skip();
      return;
    }
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
    });
    try {
      await run(browser);
    } finally {
      await browser.close();
    }
  };

  const EVERY_PATH = [
    "/jobs",
    "/jobs/batch",
    "/jobs/{id}",
    "/jobs/{id}/events",
    "/jobs/{id}/cancel",
    "/jobs/{id}/retry",
    "/queues",
    "/queues/{name}/pause",
    "/queues/{name}/resume",
    "/health",
    "/ready",
    "/metrics",
  ];

  it("renders Swagger UI with every operation from local files only, with the network blocked", async (ctx) => {
    await withBrowser(ctx, async (browser) => {
      const page = await browser.newPage();
      const blocked: string[] = [];
      const served: string[] = [];
      await page.route("**/*", (route) => {
        const url = new URL(route.request().url());
        if (url.hostname !== "127.0.0.1") {
          blocked.push(url.href);
          return route.abort();
        }
        served.push(url.pathname);
        return route.continue();
      });
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      const res = await page.goto(`${server.url}/docs`);
      expect(res?.status()).toBe(200);
      await page.waitForSelector(".opblock", { timeout: 30_000 });
      const summaries = await page.$$eval(".opblock-summary-path", (nodes) =>
        nodes.map((n) => n.getAttribute("data-path") ?? n.textContent ?? ""),
      );
      for (const path of EVERY_PATH) {
        expect(summaries.map((s) => s.replace(/\u200b/g, ""))).toContain(path);
      }
      expect(await page.title()).toBe("pgwake API");
      expect(served).toContain("/openapi.json");
      expect(served).toContain("/docs/swagger-ui-bundle.js");
      expect(blocked).toEqual([]);
      expect(pageErrors).toEqual([]);
    });
  });

  it("asks a browser for the key when the document needs one, then shows the operations", async (ctx) => {
    await withBrowser(ctx, async (browser) => {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      await page.goto(`${secured.url}/docs`);
      const input = page.locator("#pgwake-key-input");
      await input.waitFor({ state: "visible", timeout: 30_000 });
      await input.fill("wrong-key");
      await page.click("#pgwake-key button");
      await page.locator("#pgwake-key-wrong").waitFor({ state: "visible", timeout: 30_000 });
      await input.fill("docs-key");
      await page.click("#pgwake-key button");
      await page.waitForSelector(".opblock", { timeout: 30_000 });
      expect(await page.locator("#pgwake-key").isHidden()).toBe(true);
      const summaries = await page.$$eval(".opblock-summary-path", (nodes) =>
        nodes.map((n) =>
          (n.getAttribute("data-path") ?? n.textContent ?? "").replace(/\u200b/g, ""),
        ),
      );
      expect(summaries).toEqual(expect.arrayContaining(EVERY_PATH));
      expect(pageErrors).toEqual([]);
    });
  });
});
