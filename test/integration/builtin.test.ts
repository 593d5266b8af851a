import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BUILTIN_TASKS,
  demoFail,
  demoSleep,
  HttpRequestError,
  httpRequest,
  MAX_BODY_BYTES,
} from "../../src/builtin/index.ts";
import { type JobContext, PermanentError, TaskRegistry, type Worker } from "../../src/index.ts";
import { silentLogger } from "../../src/logger.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { freePort } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";

/** A local HTTP server whose routes the tests script; it records what it received. */
interface Received {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}
const received: Received[] = [];
const hits = new Map<string, number>();
const hanging = new Set<ServerResponse>();
let server: Server;
let base: string;

function route(req: IncomingMessage, res: ServerResponse, body: string): void {
  const path = new URL(req.url!, "http://x").pathname;
  const count = (hits.get(path) ?? 0) + 1;
  hits.set(path, count);
  received.push({ method: req.method!, url: req.url!, headers: req.headers, body });
  const json = (status: number, value: unknown) => {
    res.writeHead(status, { "content-type": "application/json", "x-request-id": "abc" });
    res.end(JSON.stringify(value));
  };
  switch (path) {
    case "/ok":
      json(201, { received: body ? JSON.parse(body) : null });
      break;
    case "/text":
      res.writeHead(200, { "content-type": "text/plain", "set-cookie": "secret=1" });
      res.end("plain answer");
      break;
    case "/big":
      res.writeHead(200, { "content-type": "application/json" });
      res.end(`"${"x".repeat(MAX_BODY_BYTES * 2)}"`);
      break;
    case "/flaky":
      if (count === 1) json(500, { error: "boom" });
      else json(200, { count });
      break;
    case "/busy":
      json(429, { error: "slow down" });
      break;
    case "/missing":
      json(404, { error: "no such hook" });
      break;
    case "/hang":
      hanging.add(res);
      break;
    default:
      json(500, { error: "unexpected path" });
  }
}

function ctx(signal = new AbortController().signal, attempt = 1): JobContext {
  return {
    job: {} as JobContext["job"],
    attempt,
    workerId: "test",
    signal,
    logger: silentLogger,
    log: () => {},
  };
}

async function call(payload: unknown, context = ctx()): Promise<unknown> {
  const registry = new TaskRegistry([httpRequest]);
  return httpRequest.handler(registry.parsePayload("http.request", payload) as never, context);
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => route(req, res, body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe("http.request handler", () => {
  it("POSTs a JSON body and completes with status, kept headers and the parsed body", async () => {
    const result = await call({
      url: `${base}/ok`,
      headers: { "x-signature": "s1" },
      body: { orderId: 42 },
    });
    expect(result).toEqual({
      status: 201,
      headers: expect.objectContaining({
        "content-type": "application/json",
        "x-request-id": "abc",
      }),
      body: { received: { orderId: 42 } },
      truncated: false,
    });
    const request = received.at(-1)!;
    expect(request.method).toBe("POST");
    expect(request.headers["content-type"]).toBe("application/json");
    expect(request.headers["x-signature"]).toBe("s1");
  });

  it("GETs without a body, keeps text as text and drops headers outside the kept set", async () => {
    const result = (await call({ url: `${base}/text` })) as { body: unknown; headers: object };
    expect(received.at(-1)!.method).toBe("GET");
    expect(result.body).toBe("plain answer");
    expect(result.headers).not.toHaveProperty("set-cookie");
  });

  it("cuts a body at 64 KiB and says so", async () => {
    const result = (await call({ url: `${base}/big` })) as { body: string; truncated: boolean };
    expect(result.truncated).toBe(true);
    expect(Buffer.byteLength(result.body)).toBe(MAX_BODY_BYTES);
  });

  it("throws a retryable error on 5xx and 429", async () => {
    for (const path of ["/busy", "/flaky-never"]) {
      const error = await call({ url: `${base}${path}` }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HttpRequestError);
      expect(error).not.toBeInstanceOf(PermanentError);
      expect((error as HttpRequestError).status).toBe(path === "/busy" ? 429 : 500);
    }
  });

  it("fails permanently on other 4xx, with the answer in the message", async () => {
    const error = await call({ url: `${base}/missing` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as Error).message).toMatch(/answered 404: .*no such hook/);
  });

  it("times out with a retryable error", async () => {
    const error = await call({ url: `${base}/hang`, timeoutMs: 200 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpRequestError);
    expect((error as HttpRequestError).code).toBe("HTTP_TIMEOUT");
  });

  it("retries network errors", async () => {
    const port = await freePort();
    const error = await call({ url: `http://127.0.0.1:${port}/` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpRequestError);
    expect((error as HttpRequestError).code).toBe("HTTP_NETWORK");
    expect((error as Error).message).toContain("ECONNREFUSED");
  });

  it("stops when the job's signal fires, with the signal's reason", async () => {
    const controller = new AbortController();
    const pending = call({ url: `${base}/hang` }, ctx(controller.signal));
    await waitFor(() => hanging.size >= 2, { message: "the request to arrive" });
    const reason = new Error("job cancelled");
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
  });

  it("refuses payloads it cannot send", () => {
    const registry = new TaskRegistry([httpRequest]);
    expect(() => registry.parsePayload("http.request", { url: "ftp://x" })).toThrow(/invalid/);
    expect(() =>
      registry.parsePayload("http.request", { url: "https://x.example", method: "BREW" }),
    ).toThrow(/invalid/);
  });
});

describe("demo tasks", () => {
  it("demo.sleep stops at once when aborted", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = Promise.resolve(demoSleep.handler({ ms: 60_000 }, ctx(controller.signal)));
    const reason = new Error("shutdown");
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it("demo.fail fails its first failTimes attempts, or always", () => {
    expect(() => demoFail.handler({ failTimes: 2 }, ctx(undefined, 2))).toThrow(/attempt 2/);
    expect(demoFail.handler({ failTimes: 2 }, ctx(undefined, 3))).toEqual({
      succeededOnAttempt: 3,
    });
    expect(() => demoFail.handler({}, ctx(undefined, 99))).toThrow(/always fails/);
  });

  it("every built-in has a schema and a valid example", () => {
    const registry = new TaskRegistry(BUILTIN_TASKS);
    for (const task of BUILTIN_TASKS) {
      expect(task.schema).toBeDefined();
      expect(() => registry.parsePayload(task.name, task.example)).not.toThrow();
    }
  });
});

describe("built-in tasks in a real worker", () => {
  let db: TestDb;
  let worker: Worker;

  beforeAll(async () => {
    db = await createTestDb("builtin", { tasks: BUILTIN_TASKS });
    worker = db.pgwake.worker({ pollIntervalMs: 200, concurrency: 8 });
    await worker.start();
  });
  afterAll(async () => {
    await worker?.stop({ graceMs: 0 });
    await db?.close();
  });

  const finished = (id: number) =>
    waitFor(
      async () => {
        const job = await db.pgwake.getJob(id);
        return job && ["completed", "failed"].includes(job.status) ? job : null;
      },
      { timeoutMs: 30_000, message: `job ${id} to finish` },
    );

  it("completes a webhook call with the answer", async () => {
    const { job } = await db.pgwake.enqueue("http.request", {
      url: `${base}/ok`,
      body: { n: 1 },
    });
    const done = await finished(job.id);
    expect(done.status).toBe("completed");
    expect(done.result).toMatchObject({ status: 201, body: { received: { n: 1 } } });
  });

  it("retries a 500 and completes on the next attempt", async () => {
    hits.delete("/flaky");
    const { job } = await db.pgwake.enqueue("http.request", { url: `${base}/flaky` });
    const done = await finished(job.id);
    expect(done.status).toBe("completed");
    expect(done.attempts).toBe(2);
    expect(done.result).toMatchObject({ status: 200, body: { count: 2 } });
  });

  it("fails a 404 at once, without retries", async () => {
    const { job } = await db.pgwake.enqueue("http.request", { url: `${base}/missing` });
    const done = await finished(job.id);
    expect(done.status).toBe("failed");
    expect(done.attempts).toBe(1);
    expect(done.lastError?.message).toMatch(/404/);
  });

  it("retries a timed-out call", async () => {
    const { job } = await db.pgwake.enqueue("http.request", {
      url: `${base}/hang`,
      timeoutMs: 100,
    });
    const retried = await waitFor(
      async () => {
        const current = await db.pgwake.getJob(job.id);
        return current && current.attempts >= 2 ? current : null;
      },
      { timeoutMs: 30_000, message: "a second attempt" },
    );
    expect(retried.lastError?.message).toMatch(/timed out after 100 ms/);
    await db.pgwake.cancel([job.id]);
  });

  it("demo.fail shows retries, then a dead job, within seconds", async () => {
    const { job: healing } = await db.pgwake.enqueue("demo.fail", { failTimes: 1 });
    const { job: dead } = await db.pgwake.enqueue("demo.fail", {});
    expect(dead.maxAttempts).toBe(3);
    const healed = await finished(healing.id);
    expect(healed).toMatchObject({ status: "completed", attempts: 2 });
    const failed = await finished(dead.id);
    expect(failed).toMatchObject({ status: "failed", attempts: 3 });
  });

  it("demo.echo completes with its payload", async () => {
    const { job } = await db.pgwake.enqueue("demo.echo", { hello: ["world", 1] });
    expect((await finished(job.id)).result).toEqual({ hello: ["world", 1] });
  });
});
