import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../../src/api/app.ts";
import { defineTask } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

// A task no random body can satisfy: so any 2xx on a submission route would be a bug.
const guarded = defineTask({
  name: "guarded",
  schema: z.strictObject({ token: z.literal("3b1f0c2e-unguessable") }),
  handler: () => {},
});

const hostileSegments = [
  "",
  "0",
  "-1",
  "1e3",
  "0x1f",
  "1.5",
  "9".repeat(30),
  "%00",
  "%2e%2e",
  "..",
  "%",
  "%ZZ",
  "null",
  "undefined",
  "NaN",
  " 1",
  "1;DROP TABLE jobs",
  "'",
  "😀",
  "a".repeat(300),
];
const segment = fc.oneof(
  fc.constantFrom(...hostileSegments),
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
  fc.integer().map(String),
);
const get = (path: fc.Arbitrary<string>) => path.map((p) => ["GET", p] as const);
const post = (path: fc.Arbitrary<string>) => path.map((p) => ["POST", p] as const);
const routeArb = fc.oneof(
  post(fc.constantFrom("/jobs", "/jobs/batch")),
  post(fc.constantFrom("/jobs", "/jobs/batch")),
  get(
    fc.constantFrom(
      "/jobs",
      "/queues",
      "/health",
      "/ready",
      "/metrics",
      "/openapi.json",
      "/docs",
      "/docs/",
    ),
  ),
  get(segment.map((s) => `/jobs/${s}`)),
  get(segment.map((s) => `/jobs/${s}/events`)),
  post(segment.map((s) => `/jobs/${s}/cancel`)),
  post(segment.map((s) => `/jobs/${s}/retry`)),
  // Queue names: only invalid ones, so no queue row is created by a lucky valid name.
  post(
    fc
      .constantFrom("%20", "a%2Fb", "x".repeat(129), "%00", "bad!name", "%C3%A9")
      .chain((s) => fc.constantFrom(`/queues/${s}/pause`, `/queues/${s}/resume`)),
  ),
  get(segment.map((s) => `/docs/${s}`)),
  get(fc.tuple(segment, segment).map(([a, b]) => `/jobs?${a}=${b}`)),
  get(
    fc
      .tuple(fc.constantFrom("limit", "cursor", "status", "queue", "task"), segment)
      .map(([k, v]) => `/jobs?${k}=${v}`),
  ),
  get(
    fc
      .tuple(segment, fc.constantFrom("limit", "cursor"), segment)
      .map(([id, k, v]) => `/jobs/${id}/events?${k}=${v}`),
  ),
  fc.tuple(
    fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"),
    fc.oneof(
      fc.webPath(),
      segment.map((s) => `/jobs/${s}`),
    ),
  ),
);
const jsonish = fc.oneof(
  fc.json({ maxDepth: 4 }),
  fc.string({ maxLength: 200 }),
  fc.constantFrom(
    "",
    "{",
    "null",
    "[]",
    '{"task":"guarded"}',
    '{"task":"guarded","payload":{"token":"nope"}}',
    '{"task":"unknown-task"}',
    '{"jobs":[{"task":"guarded"}]}',
    '{"jobs":[]}',
    '{"task":"guarded","payload":{"token":"3b1f0c2e-unguessable"},"priority":1e400}',
    '{"task":"guarded","payload":{"token":"3b1f0c2e-unguessable"},"runAt":"9999-99-99"}',
    '{"task":"guarded","payload":{"token":"3b1f0c2e-unguessable"},"delayMs":1e300}',
    '{"task":"guarded","payload":{"token":"3b1f0c2e-unguessable"},"maxAttempts":0}',
    '{"task":"guarded","payload":{"token":"3b1f0c2e-unguessable"},"queue":"a b"}',
    '{"task":"guarded","payload":{"token":"3b1f0c2e-unguessable","x":"\\u0000"}}',
    '{"task":"guarded","payload":{"token":"3b1f0c2e-unguessable"},"idempotencyKey":"\\ud800"}',
    '{"__proto__":{"task":"guarded"}}',
    `{"task":"guarded","payload":${"[".repeat(5000)}${"]".repeat(5000)}}`,
    `{"reason":"${"r".repeat(2000)}"}`,
  ),
  fc.jsonValue().map((v) => JSON.stringify({ task: "guarded", payload: v })),
  fc.array(fc.jsonValue(), { maxLength: 5 }).map((jobs) => JSON.stringify({ jobs })),
  fc
    .record(
      {
        task: fc.string(),
        payload: fc.jsonValue(),
        queue: fc.string(),
        priority: fc.double(),
        runAt: fc.string(),
        idempotencyKey: fc.string(),
      },
      { requiredKeys: [] },
    )
    .map((v) => JSON.stringify(v)),
);
const bodyArb = fc.oneof(
  jsonish.map((text) => new TextEncoder().encode(text)),
  fc.uint8Array({ maxLength: 300 }),
  fc.constant(undefined),
);
const headerValue = fc.oneof(
  fc.string({ maxLength: 60 }).filter((s) => /^[\x20-\x7e]*$/.test(s)),
  fc.constantFrom(
    "",
    "Bearer",
    "Bearer ",
    "Bearer k",
    "Bearer the-key",
    "bearer the-key",
    "Basic dGhlLWtleQ==",
    "Bearer the-key ",
    "Bearer\tthe-key",
  ),
);
const requestArb = fc.record({
  route: routeArb,
  body: bodyArb,
  contentType: fc.oneof(
    { arbitrary: fc.constant("application/json"), weight: 4 },
    fc.constantFrom(
      "application/json",
      "application/json; charset=utf-8",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/problem+json",
    ),
    fc.constant(undefined),
    headerValue,
  ),
  requestId: fc.option(headerValue, { nil: undefined }),
  idempotencyKey: fc.option(headerValue, { nil: undefined }),
  authorization: fc.oneof(
    { arbitrary: fc.constant("Bearer the-key"), weight: 3 },
    fc.constant(undefined),
    headerValue,
  ),
  contentLength: fc.option(fc.constantFrom("abc", "-1", "99999999999", "0", "5"), {
    nil: undefined,
  }),
});

describe("HTTP API under random and hostile input", () => {
  let db: TestDb;
  const count = async (table: string) =>
    Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM {{schema}}.${table}`))[0]!.n);

  beforeAll(async () => {
    db = await createTestDb("api_fuzz", { tasks: [guarded] });
  });
  afterAll(async () => {
    await db.close();
  });

  for (const secured of [false, true]) {
    it(`answers every request with a non-5xx, 4xx errors in the one JSON shape, and creates no job (${secured ? "with" : "without"} API keys)`, async () => {
      const tally = new Map<number, number>();
      const app = createApp({
        pgwake: db.pgwake,
        bodyLimitBytes: 2048,
        batchLimit: 3,
        ...(secured ? { apiKeys: ["the-key"] } : {}),
      });
      await fc.assert(
        fc.asyncProperty(requestArb, async ({ route: [method, path], ...r }) => {
          const headers = new Headers();
          const set = (name: string, value: string | undefined) => {
            if (value === undefined) return;
            try {
              headers.set(name, value);
            } catch {
              // Headers the fetch API itself refuses never reach a server.
            }
          };
          set("content-type", r.contentType);
          set("x-request-id", r.requestId);
          set("idempotency-key", r.idempotencyKey);
          set("authorization", r.authorization);
          set("content-length", r.contentLength);
          const withBody = r.body !== undefined && method !== "GET" && method !== "HEAD";
          let res: Response;
          try {
            res = await app.request(path, {
              method,
              headers,
              ...(withBody ? { body: r.body } : {}),
            });
          } catch (error) {
            // Only a URL the fetch API cannot even build may fail here, before the app runs.
            expect(String(error)).toMatch(/Invalid URL|TypeError/);
            return;
          }
          tally.set(res.status, (tally.get(res.status) ?? 0) + 1);
          expect(res.status, `${method} ${path}`).toBeLessThan(500);
          if (res.status >= 400 && method !== "HEAD") {
            expect(res.headers.get("content-type")).toMatch(/^application\/json/);
            const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
            expect(typeof body.error?.code).toBe("string");
            expect(typeof body.error?.message).toBe("string");
          } else {
            await res.arrayBuffer();
          }
          expect(res.headers.get("x-request-id")).toBeTruthy();
        }),
        { numRuns: 400 },
      );
      console.log("statuses seen", Object.fromEntries([...tally].sort()));
      // The property must have reached the routes, not only the router's 404.
      expect([...tally.keys()].filter((s) => s !== 404).length).toBeGreaterThanOrEqual(5);
      expect(await count("jobs")).toBe(0);
      expect(await count("job_events")).toBe(0);
      expect(await count("queues")).toBe(0);
    });
  }
});
