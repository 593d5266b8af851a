import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../../src/api/app.ts";
import { type ApiServer, serveApi } from "../../src/api/server.ts";
import { BUILTIN_TASKS } from "../../src/builtin/index.ts";
import { SchemaSql } from "../../src/db/sql.ts";
import { Pgwake, type Worker } from "../../src/index.ts";
import { reconcileSchedules } from "../../src/schedules/reconcile.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// The OpenAPI document checked against the server it describes: every documented example
// request is sent to a real app on a real Postgres schema, and every answer is validated against
// the schema the document gives for its status; then every documented error status is brought
// about and validated the same way. A status documented but never seen fails the test.

type Schema = Record<string, unknown>;
interface Media {
  schema?: Schema;
  example?: unknown;
  examples?: Record<string, { value: unknown }>;
}
interface Parameter {
  name: string;
  in: "path" | "query" | "header";
  required?: boolean;
  schema: Schema;
  example?: unknown;
}
interface Operation {
  operationId: string;
  security?: Array<Record<string, string[]>>;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, Media> };
  responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, Media> }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}
interface Endpoint {
  path: string;
  method: string;
  op: Operation;
}
interface Request {
  method: string;
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: string;
}

const KEY = "roundtrip-key";
/** A schedule defined in code, which the API may pause but not change or delete (409). */
const CODE_SCHEDULE = "roundtrip-code";

/** A validator for any schema of the document: zod's own JSON Schema reader, refs resolved. */
function validatorOf(doc: Document) {
  const local = (value: unknown) =>
    JSON.parse(JSON.stringify(value).replaceAll('"#/components/schemas/', '"#/$defs/')) as Schema;
  const defs = local(doc.components.schemas);
  const cache = new Map<Schema, z.ZodType>();
  return (schema: Schema, value: unknown): string[] => {
    let zod = cache.get(schema);
    if (!zod) {
      zod = z.fromJSONSchema({ ...local(schema), $defs: defs } as never);
      cache.set(schema, zod);
    }
    const result = zod.safeParse(value);
    return result.success
      ? []
      : result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
  };
}

function endpointsOf(doc: Document): Endpoint[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ path, method: method.toUpperCase(), op })),
  );
}

const needsKey = (op: Operation) => (op.security ?? []).some((s) => "bearer" in s);

/** The requests "Try it out" would send: parameter examples, then each body example. */
function exampleRequests(endpoint: Endpoint, auth: boolean): Request[] {
  const { op } = endpoint;
  let path = endpoint.path;
  const query: Record<string, string> = {};
  const headers: Record<string, string> = {};
  for (const p of op.parameters ?? []) {
    if (p.example === undefined) {
      expect(p.required, `${op.operationId}: required parameter ${p.name} has an example`).not.toBe(
        true,
      );
      continue;
    }
    const text = Array.isArray(p.example) ? p.example.join(",") : `${p.example}`;
    if (p.in === "path") path = path.replace(`{${p.name}}`, encodeURIComponent(text));
    else if (p.in === "query") query[p.name] = text;
    else headers[p.name] = text;
  }
  if (auth && needsKey(op)) headers.authorization = `Bearer ${KEY}`;
  const base = { method: endpoint.method, path, query, headers };
  const media = op.requestBody?.content["application/json"];
  if (!media) return [base];
  const bodies = media.examples
    ? Object.values(media.examples).map((e) => e.value)
    : [media.example];
  return bodies.map((body) => ({
    ...base,
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify(body),
  }));
}

const essence = (type: string | null) => (type ?? "").split(";")[0]!.trim().toLowerCase();

describe("the OpenAPI document, checked against the server", () => {
  let db: TestDb;
  let server: ApiServer;
  let worker: Worker;
  let doc: Document;
  let validate: ReturnType<typeof validatorOf>;
  const seen = new Map<string, Set<string>>();

  const send = async (req: Request, target = server.url): Promise<Response> => {
    const url = new URL(req.path, target);
    for (const [k, v] of Object.entries(req.query ?? {})) url.searchParams.set(k, v);
    return fetch(url, {
      method: req.method,
      headers: req.headers ?? {},
      ...(req.body !== undefined ? { body: req.body } : {}),
    });
  };

  /** Checks an answer against the document; returns its JSON body (or text). */
  const check = async (endpoint: Endpoint, res: Response, where: string): Promise<unknown> => {
    const status = String(res.status);
    const documented = endpoint.op.responses[status];
    expect(documented, `${where}: status ${status} is documented`).toBeDefined();
    seen.get(endpoint.op.operationId)!.add(status);
    expect(res.headers.get("x-request-id"), `${where}: x-request-id`).toBeTruthy();
    for (const header of Object.keys(documented!.headers ?? {})) {
      expect(res.headers.get(header), `${where}: documented header ${header}`).not.toBeNull();
    }
    const type = essence(res.headers.get("content-type"));
    const content = documented!.content ?? {};
    const media = Object.entries(content).find(([t]) => t === type)?.[1];
    expect(media, `${where}: content type ${type} is documented for ${status}`).toBeDefined();
    if (type !== "application/json") {
      const text = await res.text();
      expect(text.length, `${where}: a body`).toBeGreaterThan(0);
      return text;
    }
    const body: unknown = await res.json();
    expect(
      validate(media!.schema!, body),
      `${where}: ${JSON.stringify(body).slice(0, 400)}`,
    ).toEqual([]);
    return body;
  };

  beforeAll(async () => {
    db = await createTestDb("openapi_rt", { tasks: BUILTIN_TASKS });
    // A live worker on a queue of its own, so /queues lists a worker (its lastSeenAt is checked
    // against the Timestamp schema) while the examples' jobs stay pending for cancel and retry.
    worker = db.pgwake.worker({ queues: ["roundtrip-idle"], concurrency: 1 });
    await worker.start();
    await waitFor(
      async () =>
        (await db.query("SELECT 1 FROM {{schema}}.workers WHERE 'roundtrip-idle' = ANY (queues)"))
          .length > 0,
      { message: "worker registered" },
    );
    // After the worker's start, which prunes its owner's code schedules of its tasks: another owner.
    await reconcileSchedules(
      db.pool,
      new SchemaSql(db.schema),
      [{ name: CODE_SCHEDULE, cron: "@yearly", task: "demo.echo", payload: { n: 0 } }],
      { owner: "roundtrip", tasks: db.pgwake.tasks },
    );
    const app = createApp({ pgwake: db.pgwake, apiKeys: [KEY], acceptUnknownTasks: false });
    server = await serveApi(app, { port: 0 });
    const res = await fetch(`${server.url}/openapi.json`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    doc = (await res.json()) as Document;
    validate = validatorOf(doc);
    for (const { op } of endpointsOf(doc)) seen.set(op.operationId, new Set());
  });
  afterAll(async () => {
    await worker?.stop({ graceMs: 1_000 });
    await server?.close();
    await db?.close();
  });

  it("holds examples that match their own schemas", () => {
    let checked = 0;
    for (const { op, method, path } of endpointsOf(doc)) {
      const where = `${method} ${path}`;
      const body = op.requestBody?.content["application/json"];
      if (body) {
        const values = body.examples
          ? Object.values(body.examples).map((e) => e.value)
          : [body.example];
        for (const value of values) {
          expect(validate(body.schema!, value), `${where} request example`).toEqual([]);
          checked++;
        }
      }
      for (const [status, response] of Object.entries(op.responses)) {
        const media = response.content?.["application/json"];
        if (!media) continue;
        expect(media.example, `${where} ${status} has an example`).toBeDefined();
        expect(validate(media.schema!, media.example), `${where} ${status} example`).toEqual([]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(40);
  });

  it("answers every example request with a 2xx that matches the documented schema", async () => {
    const submitted = new Set<string>();
    for (const endpoint of endpointsOf(doc)) {
      for (const req of exampleRequests(endpoint, true)) {
        const where = `${req.method} ${req.path} ${req.body ?? ""}`;
        const res = await send(req);
        expect(res.status, `${where}: an example succeeds`).toBeLessThan(300);
        const body = await check(endpoint, res, where);
        if (endpoint.op.operationId === "submitJob") {
          submitted.add((body as { job: { task: string } }).job.task);
        }
      }
    }
    // A repeat of the examples that carry an idempotency key answers 200 with the first job.
    for (const endpoint of endpointsOf(doc)) {
      if (endpoint.op.operationId !== "submitJob" && endpoint.op.operationId !== "submitJobs") {
        continue;
      }
      for (const req of exampleRequests(endpoint, true)) {
        const body = JSON.parse(req.body!) as { idempotencyKey?: string; jobs?: unknown[] };
        const keyed = body.jobs
          ? { jobs: body.jobs.filter((j) => (j as { idempotencyKey?: string }).idempotencyKey) }
          : body.idempotencyKey
            ? body
            : null;
        if (!keyed || (keyed.jobs && keyed.jobs.length === 0)) continue;
        const res = await send({ ...req, body: JSON.stringify(keyed) });
        expect(res.status, `repeat of ${req.body}`).toBe(200);
        await check(endpoint, res, `repeat of ${req.body}`);
      }
    }
    // The examples submit the tasks this server runs (the built-in ones), demo.echo first.
    expect([...submitted].sort()).toEqual(BUILTIN_TASKS.map((t) => t.name).sort());
    expect(
      doc.paths["/jobs"]!.post!.requestBody!.content["application/json"]!.examples!.job,
    ).toMatchObject({
      value: { task: "demo.echo" },
    });
    const queues = (await (
      await send({ method: "GET", path: "/queues", headers: { authorization: `Bearer ${KEY}` } })
    ).json()) as { queues: Array<{ workers: Array<{ lastSeenAt: string }> }> };
    const seenAt = queues.queues.flatMap((q) => q.workers.map((w) => w.lastSeenAt));
    expect(seenAt.length).toBeGreaterThan(0);
    for (const at of seenAt) expect(at).toBe(new Date(at).toISOString());
  });

  it("answers 401 without a key and 403 with a wrong one, exactly where the document says a key is needed", async () => {
    for (const endpoint of endpointsOf(doc)) {
      const [req] = exampleRequests(endpoint, false);
      const missing = await send(req!);
      if (needsKey(endpoint.op)) {
        expect(missing.status, `${req!.method} ${req!.path} without a key`).toBe(401);
        await check(endpoint, missing, `${req!.path} no key`);
        const wrong = await send({
          ...req!,
          headers: { ...req!.headers, authorization: "Bearer not-the-key" },
        });
        expect(wrong.status).toBe(403);
        await check(endpoint, wrong, `${req!.path} wrong key`);
      } else {
        expect([401, 403], `${req!.path} is public`).not.toContain(missing.status);
        await missing.arrayBuffer();
      }
    }
  });

  it("answers 405 with Allow for a method a path does not take", async () => {
    const byPath = new Map<string, Endpoint[]>();
    for (const e of endpointsOf(doc)) byPath.set(e.path, [...(byPath.get(e.path) ?? []), e]);
    for (const [path, endpoints] of byPath) {
      const [req] = exampleRequests(endpoints[0]!, true);
      // A method this path does not take.
      const method = ["DELETE", "PATCH", "PUT"].find(
        (m) => !endpoints.some((e) => e.method.toUpperCase() === m),
      )!;
      const res = await send({ ...req!, method, body: undefined });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get("allow")?.split(", ").sort()).toEqual(
        expect.arrayContaining(endpoints.map((e) => e.method)),
      );
      const body = await check(endpoints[0]!, res, `${method} ${path}`);
      for (const e of endpoints.slice(1)) {
        expect(
          validate(e.op.responses["405"]!.content!["application/json"]!.schema!, body),
        ).toEqual([]);
        seen.get(e.op.operationId)!.add("405");
      }
    }
  });

  it("answers every documented client error, in the documented shape", async () => {
    const endpoint = (operationId: string) =>
      endpointsOf(doc).find((e) => e.op.operationId === operationId)!;
    const auth = { authorization: `Bearer ${KEY}` };
    const json = { ...auth, "content-type": "application/json" };
    const submit = async (body: unknown) => {
      const res = await send({
        method: "POST",
        path: "/jobs",
        headers: json,
        body: JSON.stringify(body),
      });
      return ((await res.json()) as { job: { id: number } }).job.id;
    };
    const pending = await submit({ task: "demo.echo", payload: { n: 1 }, delayMs: 3_600_000 });
    const cancelled = await submit({ task: "demo.echo", payload: { n: 2 }, delayMs: 3_600_000 });
    await send({ method: "POST", path: `/jobs/${cancelled}/cancel`, headers: auth });
    const big = JSON.stringify({ task: "demo.echo", payload: "x".repeat(2 * 1024 * 1024) });
    // The examples deleted their schedule: one defined over HTTP for the refusals that need one.
    const made = await send({
      method: "POST",
      path: "/schedules",
      headers: json,
      body: JSON.stringify({ name: "roundtrip-http", cron: "@yearly", task: "demo.echo" }),
    });
    expect(made.status, await made.text()).toBe(201);
    const schedule = (name: string, suffix = "") => `/schedules/${name}${suffix}`;
    const plain = { ...auth, "content-type": "text/plain" };
    const codes: Record<string, string> = {};

    const cases: Array<[string, number, Request]> = [
      ["submitJob", 400, { method: "POST", path: "/jobs", headers: json, body: '{"task":""}' }],
      ["submitJob", 413, { method: "POST", path: "/jobs", headers: json, body: big }],
      [
        "submitJob",
        415,
        {
          method: "POST",
          path: "/jobs",
          headers: { ...auth, "content-type": "text/plain" },
          body: "{}",
        },
      ],
      [
        "submitJob",
        422,
        { method: "POST", path: "/jobs", headers: json, body: '{"task":"send-emial"}' },
      ],
      [
        "submitJobs",
        400,
        { method: "POST", path: "/jobs/batch", headers: json, body: '{"jobs":[]}' },
      ],
      ["submitJobs", 413, { method: "POST", path: "/jobs/batch", headers: json, body: big }],
      ["submitJobs", 415, { method: "POST", path: "/jobs/batch", headers: auth, body: "{}" }],
      [
        "submitJobs",
        422,
        {
          method: "POST",
          path: "/jobs/batch",
          headers: json,
          body: '{"jobs":[{"task":"demo.sleep","payload":{"ms":-1}}]}',
        },
      ],
      ["listJobs", 400, { method: "GET", path: "/jobs", query: { limit: "0" }, headers: auth }],
      ["getJob", 400, { method: "GET", path: "/jobs/abc", headers: auth }],
      ["getJob", 404, { method: "GET", path: "/jobs/987654321", headers: auth }],
      [
        "listJobEvents",
        400,
        { method: "GET", path: `/jobs/${pending}/events`, query: { limit: "x" }, headers: auth },
      ],
      ["listJobEvents", 404, { method: "GET", path: "/jobs/987654321/events", headers: auth }],
      [
        "cancelJob",
        400,
        { method: "POST", path: `/jobs/${pending}/cancel`, headers: json, body: '{"reason":5}' },
      ],
      ["cancelJob", 404, { method: "POST", path: "/jobs/987654321/cancel", headers: auth }],
      ["cancelJob", 409, { method: "POST", path: `/jobs/${cancelled}/cancel`, headers: auth }],
      [
        "cancelJob",
        413,
        { method: "POST", path: `/jobs/${pending}/cancel`, headers: json, body: big },
      ],
      [
        "cancelJob",
        415,
        {
          method: "POST",
          path: `/jobs/${pending}/cancel`,
          headers: { ...auth, "content-type": "text/plain" },
          body: "{}",
        },
      ],
      [
        "retryJob",
        400,
        { method: "POST", path: `/jobs/${pending}/retry`, headers: json, body: '{"now":true}' },
      ],
      ["retryJob", 404, { method: "POST", path: "/jobs/987654321/retry", headers: auth }],
      ["retryJob", 409, { method: "POST", path: `/jobs/${pending}/retry`, headers: auth }],
      [
        "retryJob",
        413,
        { method: "POST", path: `/jobs/${pending}/retry`, headers: json, body: big },
      ],
      [
        "retryJob",
        415,
        {
          method: "POST",
          path: `/jobs/${pending}/retry`,
          headers: { ...auth, "content-type": "text/plain" },
          body: "{}",
        },
      ],
      ["pauseQueue", 400, { method: "POST", path: "/queues/bad%20name/pause", headers: auth }],
      ["pauseQueue", 404, { method: "POST", path: "/queues/defualt/pause", headers: auth }],
      ["resumeQueue", 400, { method: "POST", path: "/queues/bad%20name/resume", headers: auth }],
      ["resumeQueue", 404, { method: "POST", path: "/queues/defualt/resume", headers: auth }],
      ["getQueueLimits", 400, { method: "GET", path: "/queues/bad%20name/limits", headers: auth }],
      ["getQueueLimits", 404, { method: "GET", path: "/queues/defualt/limits", headers: auth }],
      [
        "setQueueLimits",
        400,
        {
          method: "PUT",
          path: "/queues/default/limits",
          headers: json,
          body: JSON.stringify({ keyConcurrency: 0 }),
        },
      ],
      [
        "setQueueLimits",
        404,
        {
          method: "PUT",
          path: "/queues/defualt/limits",
          headers: json,
          body: JSON.stringify({ concurrency: 2 }),
        },
      ],
      [
        "deleteQueueLimits",
        400,
        { method: "DELETE", path: "/queues/bad%20name/limits", headers: auth },
      ],
      [
        "deleteQueueLimits",
        404,
        { method: "DELETE", path: "/queues/defualt/limits", headers: auth },
      ],
      [
        "listQueueKeys",
        400,
        { method: "GET", path: "/queues/default/keys?limit=0", headers: auth },
      ],
      ["listQueueKeys", 404, { method: "GET", path: "/queues/defualt/keys", headers: auth }],
      ["docsFile", 404, { method: "GET", path: "/docs/package.json" }],
      [
        "bulkRetryJobs",
        400,
        { method: "POST", path: "/jobs/bulk/retry", headers: json, body: '{"status":["pending"]}' },
      ],
      [
        "bulkRetryJobs",
        413,
        { method: "POST", path: "/jobs/bulk/retry", headers: json, body: big },
      ],
      [
        "bulkRetryJobs",
        415,
        { method: "POST", path: "/jobs/bulk/retry", headers: plain, body: "{}" },
      ],
      [
        "bulkCancelJobs",
        400,
        { method: "POST", path: "/jobs/bulk/cancel", headers: json, body: '{"status":["failed"]}' },
      ],
      [
        "bulkCancelJobs",
        413,
        { method: "POST", path: "/jobs/bulk/cancel", headers: json, body: big },
      ],
      [
        "bulkCancelJobs",
        415,
        { method: "POST", path: "/jobs/bulk/cancel", headers: plain, body: "{}" },
      ],
      [
        "bulkDeleteJobs",
        400,
        { method: "POST", path: "/jobs/bulk/purge", headers: json, body: '{"queue":"default"}' },
      ],
      [
        "bulkDeleteJobs",
        413,
        { method: "POST", path: "/jobs/bulk/purge", headers: json, body: big },
      ],
      [
        "bulkDeleteJobs",
        415,
        { method: "POST", path: "/jobs/bulk/purge", headers: plain, body: "{}" },
      ],
      [
        "createSchedule",
        400,
        {
          method: "POST",
          path: "/schedules",
          headers: json,
          body: JSON.stringify({ name: "bad", cron: "61 * * * *", task: "demo.echo" }),
        },
      ],
      [
        "createSchedule",
        409,
        {
          method: "POST",
          path: "/schedules",
          headers: json,
          body: JSON.stringify({ name: CODE_SCHEDULE, cron: "@daily", task: "demo.echo" }),
        },
      ],
      ["createSchedule", 413, { method: "POST", path: "/schedules", headers: json, body: big }],
      ["createSchedule", 415, { method: "POST", path: "/schedules", headers: plain, body: "{}" }],
      [
        "createSchedule",
        422,
        {
          method: "POST",
          path: "/schedules",
          headers: json,
          body: JSON.stringify({ name: "typo", cron: "@daily", task: "send-emial" }),
        },
      ],
      [
        "listSchedules",
        400,
        { method: "GET", path: "/schedules", query: { limit: "0" }, headers: auth },
      ],
      [
        "pauseSchedule",
        400,
        { method: "POST", path: schedule("bad%20name", "/pause"), headers: auth },
      ],
      [
        "pauseSchedule",
        404,
        { method: "POST", path: schedule("nightly-reprot", "/pause"), headers: auth },
      ],
      [
        "resumeSchedule",
        400,
        { method: "POST", path: schedule("bad%20name", "/resume"), headers: auth },
      ],
      [
        "resumeSchedule",
        404,
        { method: "POST", path: schedule("nightly-reprot", "/resume"), headers: auth },
      ],
      [
        "triggerSchedule",
        400,
        {
          method: "POST",
          path: schedule("roundtrip-http", "/trigger"),
          headers: json,
          body: '{"idempotencyKey":""}',
        },
      ],
      [
        "triggerSchedule",
        404,
        { method: "POST", path: schedule("nightly-reprot", "/trigger"), headers: auth },
      ],
      [
        "triggerSchedule",
        413,
        { method: "POST", path: schedule("roundtrip-http", "/trigger"), headers: json, body: big },
      ],
      [
        "triggerSchedule",
        415,
        {
          method: "POST",
          path: schedule("roundtrip-http", "/trigger"),
          headers: plain,
          body: "{}",
        },
      ],
      ["getSchedule", 400, { method: "GET", path: schedule("bad%20name"), headers: auth }],
      ["getSchedule", 404, { method: "GET", path: schedule("nightly-reprot"), headers: auth }],
      [
        "updateSchedule",
        400,
        {
          method: "PATCH",
          path: schedule("roundtrip-http"),
          headers: json,
          body: '{"cron":"0 25 * * *"}',
        },
      ],
      [
        "updateSchedule",
        404,
        {
          method: "PATCH",
          path: schedule("nightly-reprot"),
          headers: json,
          body: '{"cron":"@daily"}',
        },
      ],
      [
        "updateSchedule",
        409,
        {
          method: "PATCH",
          path: schedule(CODE_SCHEDULE),
          headers: json,
          body: '{"cron":"@daily"}',
        },
      ],
      [
        "updateSchedule",
        413,
        { method: "PATCH", path: schedule("roundtrip-http"), headers: json, body: big },
      ],
      [
        "updateSchedule",
        415,
        { method: "PATCH", path: schedule("roundtrip-http"), headers: plain, body: "{}" },
      ],
      [
        "updateSchedule",
        422,
        {
          method: "PATCH",
          path: schedule("roundtrip-http"),
          headers: json,
          body: '{"task":"demo.sleep","payload":{"ms":-1}}',
        },
      ],
      ["deleteSchedule", 400, { method: "DELETE", path: schedule("bad%20name"), headers: auth }],
      [
        "deleteSchedule",
        404,
        { method: "DELETE", path: schedule("nightly-reprot"), headers: auth },
      ],
      ["deleteSchedule", 409, { method: "DELETE", path: schedule(CODE_SCHEDULE), headers: auth }],
    ];
    for (const [operationId, status, req] of cases) {
      const where = `${operationId} ${status}`;
      const res = await send(req);
      expect(res.status, where).toBe(status);
      const body = await check(endpoint(operationId), res, where);
      if (operationId.endsWith("Schedule") || operationId.endsWith("Schedules")) {
        codes[where] = (body as { error: { code: string } }).error.code;
      }
    }
    // The schedule refusals name the schedule problem; none of them changed a schedule.
    expect(codes).toMatchObject({
      "createSchedule 409": "SCHEDULE_CONFLICT",
      "updateSchedule 409": "SCHEDULE_CONFLICT",
      "deleteSchedule 409": "SCHEDULE_CONFLICT",
      "getSchedule 404": "SCHEDULE_NOT_FOUND",
      "updateSchedule 404": "SCHEDULE_NOT_FOUND",
      "createSchedule 422": "UNKNOWN_TASK",
      "updateSchedule 422": "INVALID_PAYLOAD",
    });
    // A value only the store refuses (jsonb holds no U+0000): 400 INVALID_SCHEDULE, in the shape
    // documented for the status.
    const nul = await send({
      method: "POST",
      path: "/schedules",
      headers: json,
      body: JSON.stringify({
        name: "nul",
        cron: "@daily",
        task: "demo.echo",
        payload: { s: "a\u0000" },
      }),
    });
    expect(nul.status).toBe(400);
    const refused = (await check(endpoint("createSchedule"), nul, "createSchedule 400 nul")) as {
      error: { code: string; details: Array<{ path: string }> };
    };
    expect(refused.error).toMatchObject({
      code: "INVALID_SCHEDULE",
      details: [{ path: "payload.s" }],
    });
    const left = await db.query<{ name: string; cron: string; defined_by: string }>(
      "SELECT name, cron, defined_by FROM {{schema}}.schedules ORDER BY name",
    );
    expect(left).toEqual([
      { name: CODE_SCHEDULE, cron: "@yearly", defined_by: "code" },
      { name: "roundtrip-http", cron: "@yearly", defined_by: "http" },
    ]);
  });

  it("answers 503 NOT_READY before migration and DATABASE_UNAVAILABLE without a database, on every route that needs it", async () => {
    const unmigrated = new Pgwake({
      pool: db.pool,
      schema: `t_unmigrated_${randomBytes(3).toString("hex")}`,
      tasks: BUILTIN_TASKS,
    });
    const down = new Pgwake({
      connectionString: "postgres://postgres@127.0.0.1:1/nowhere",
      schema: "down",
      tasks: BUILTIN_TASKS,
    });
    const servers = await Promise.all(
      [unmigrated, down].map((pgwake) =>
        serveApi(createApp({ pgwake, apiKeys: [KEY], acceptUnknownTasks: false }), { port: 0 }),
      ),
    );
    try {
      for (const [target, code] of [
        [servers[0]!, "NOT_READY"],
        [servers[1]!, "DATABASE_UNAVAILABLE"],
      ] as const) {
        let refused = 0;
        for (const endpoint of endpointsOf(doc)) {
          for (const req of exampleRequests(endpoint, true)) {
            const where = `${code}: ${req.method} ${req.path}`;
            const res = await send(req, target.url);
            if (endpoint.op.responses["503"]) {
              expect(res.status, where).toBe(503);
              expect(res.headers.get("retry-after"), where).toMatch(/^\d+$/);
              const body = (await check(endpoint, res, where)) as {
                error: { code: string; message: string };
              };
              expect(body.error.code, where).toBe(code);
              refused++;
            } else {
              expect(res.status, where).toBeLessThan(300);
              await check(endpoint, res, where);
            }
          }
        }
        expect(refused).toBeGreaterThanOrEqual(10);
      }
      // Before migration the answer says what to do.
      const res = await send(
        {
          method: "POST",
          path: "/jobs",
          headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
          body: '{"task":"demo.echo"}',
        },
        servers[0]!.url,
      );
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
        /pgwake migrate/,
      );
    } finally {
      await Promise.all(servers.map((s) => s.close()));
      await down.close();
    }
  });

  it("has seen every documented status of every operation", () => {
    const missing: string[] = [];
    for (const { op } of endpointsOf(doc)) {
      for (const status of Object.keys(op.responses)) {
        // `default` is a server fault (500), which no request should be able to cause.
        if (status !== "default" && !seen.get(op.operationId)!.has(status)) {
          missing.push(`${op.operationId} ${status}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});
