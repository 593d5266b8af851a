import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../../src/api/app.ts";
import { type ApiServer, serveApi } from "../../src/api/server.ts";
import { defineTask } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

const CHROMIUM = "/usr/bin/chromium";

interface Operation {
  operationId?: string;
  responses?: Record<
    string,
    { content?: Record<string, { example?: unknown; examples?: unknown }> }
  >;
  requestBody?: { content: Record<string, { example?: unknown; examples?: unknown }> };
}

describe("OpenAPI document and Swagger UI", () => {
  let db: TestDb;
  let app: ReturnType<typeof createApp>;
  let server: ApiServer;

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
  });
  afterAll(async () => {
    await server?.close();
    await db.close();
  });

  it("is OpenAPI 3.1 and documents every route of the app, each operation with responses and examples", async () => {
    const res = await app.request("/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, Record<string, Operation>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    const routes = new Set(
      app.routes
        .filter((r) => r.method !== "ALL")
        .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z]+)/g, "{$1}")}`),
    );
    expect(routes.size).toBeGreaterThanOrEqual(16);
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((m) => `${m} ${path}`),
      ),
    );
    expect([...routes].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((r) => !routes.has(r))).toEqual([]);
    const operationIds = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method} ${path}`;
        expect(op.operationId, where).toBeTruthy();
        expect(operationIds.has(op.operationId!), where).toBe(false);
        operationIds.add(op.operationId!);
        const responses = Object.entries(op.responses ?? {});
        expect(responses.length, where).toBeGreaterThan(0);
        for (const [status, response] of responses) {
          const media = Object.values(response.content ?? {});
          expect(media.length, `${where} ${status}`).toBeGreaterThan(0);
          for (const m of media)
            expect(m.example ?? m.examples, `${where} ${status}`).toBeDefined();
        }
        if (op.requestBody) {
          for (const m of Object.values(op.requestBody.content))
            expect(m.example ?? m.examples, where).toBeDefined();
        }
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
    // Known tasks get an example of their own.
    expect(JSON.stringify(doc.paths["/jobs"]!.post!.requestBody)).toContain("task:send-email");
  });

  it("renders Swagger UI with every operation from local files only, with the network blocked", async (ctx) => {
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
      for (const path of [
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
      ]) {
        expect(summaries.map((s) => s.replace(/\u200b/g, ""))).toContain(path);
      }
      expect(await page.title()).toBe("pgwake API");
      expect(served).toContain("/openapi.json");
      expect(served).toContain("/docs/swagger-ui-bundle.js");
      expect(blocked).toEqual([]);
      expect(pageErrors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
