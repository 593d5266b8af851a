/**
 * Scenario 5 — hostile input, and scenario 6 — idempotency under load, against a real
 * `pgwake api` process over real sockets.
 *
 * 5: thousands of generated requests across every route (random JSON, deep nesting, huge
 * strings, wrong types, unicode edge cases with lone surrogates and NUL, SQL-looking text, bad
 * ids, bad headers and content types, oversized and malformed bodies, raw malformed HTTP).
 * Proves: no 5xx, rows appear only for accepted submissions, the process stays up and its
 * memory stays bounded.
 * 6: 200 concurrent submissions over 20 idempotency keys make exactly 20 jobs, and every answer
 * for one key names the same job.
 */
import { readFileSync } from "node:fs";
import { type Agent, Agent as HttpAgent, request as httpRequest } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { TestDb } from "../helpers/db.ts";
import { freePort } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  createFaultDb,
  killAll,
  type PgwakeProcess,
  pick,
  report,
  spawnPgwake,
} from "./helpers.ts";

const REQUESTS = Number(process.env.PGWAKE_FAULTS_REQUESTS ?? pick(10_000, 2_000));
const IN_FLIGHT = 16;
const SEED = Number(process.env.PGWAKE_FAULTS_SEED ?? Date.now() % 1_000_000);

let db: TestDb;
let api: PgwakeProcess;
let port: number;
let agent: Agent;

beforeAll(async () => {
  db = await createFaultDb("api");
  port = await freePort();
  api = spawnPgwake({
    command: "api",
    url: db.url,
    schema: db.schema,
    args: ["--port", String(port), "--log-level", "error"],
  });
  agent = new HttpAgent({ keepAlive: true, maxSockets: IN_FLIGHT });
  await waitFor(async () => (await send({ method: "GET", path: "/ready" })).status === 200, {
    timeoutMs: 30_000,
    intervalMs: 100,
    message: "API ready",
  });
});

afterAll(async () => {
  agent?.destroy();
  await killAll();
  await db?.close();
});

// ---- transport ------------------------------------------------------------------------------

interface Req {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Send the body with Transfer-Encoding: chunked (no Content-Length). */
  chunked?: boolean;
}

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request Node's client refuses to write (a space in the path…) goes out as raw bytes. */
function toRaw(req: Req): Buffer {
  const body = req.body === undefined ? Buffer.alloc(0) : Buffer.from(req.body);
  const head = [
    `${req.method} ${req.path} HTTP/1.1`,
    "Host: 127.0.0.1",
    ...Object.entries(req.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    `Content-Length: ${body.length}`,
    "Connection: close",
    "",
    "",
  ].join("\r\n");
  return Buffer.concat([Buffer.from(head, "latin1"), body]);
}

function send(req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        host: "127.0.0.1",
        port,
        method: req.method,
        path: req.path,
        headers: req.headers,
        agent,
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on("error", reject);
      },
    );
    r.on("timeout", () => r.destroy(new Error("request timed out")));
    r.on("error", reject);
    if (req.body !== undefined) {
      if (req.chunked) {
        const buf = Buffer.from(req.body);
        for (let i = 0; i < buf.length; i += 64 * 1024) r.write(buf.subarray(i, i + 64 * 1024));
      } else {
        r.write(req.body);
      }
    }
    r.end();
  });
}

/** Writes raw bytes on a fresh socket; the status of the first response, or 0 if it closed. */
function sendRaw(bytes: string | Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let text = "";
    const done = () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve(m ? Number(m[1]) : 0);
    };
    socket.setTimeout(10_000, () => {
      socket.destroy();
      done();
    });
    socket.on("data", (c) => {
      text += c.toString("latin1");
      if (/^HTTP\/1\.[01] \d{3}/.test(text)) socket.destroy();
    });
    socket.on("close", done);
    socket.on("error", (error: NodeJS.ErrnoException) =>
      error.code === "ECONNRESET" || error.code === "EPIPE" ? done() : reject(error),
    );
    socket.write(bytes);
    socket.end();
  });
}

// ---- generators -----------------------------------------------------------------------------

/** mulberry32: a seeded generator, so a failing run can be replayed with PGWAKE_FAULTS_SEED. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(SEED);
const int = (n: number) => Math.floor(random() * n);
const oneOf = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const chance = (p: number) => random() < p;

const NASTY_STRINGS = [
  "",
  " ",
  "\u0000",
  "a\u0000b",
  "\ud800",
  "x\udc00y",
  "\ud83d\ude00",
  "\uffff",
  "\ufeff",
  "\u202e",
  "é",
  "e\u0301",
  "𝕏".repeat(50),
  "'; DROP TABLE jobs; --",
  '" OR 1=1 --',
  "$1",
  "{{schema}}",
  'pgwake".jobs',
  "%00",
  "../../etc/passwd",
  "<script>alert(1)</script>",
  "\\u0000",
  "\r\n",
  "null",
  "NaN",
  "-0",
  "1e309",
  "9223372036854775808",
  "a".repeat(300),
];
const NASTY_NUMBERS = [
  0,
  -1,
  1.5,
  -0.0,
  1e308,
  -1e308,
  2 ** 31,
  2 ** 53,
  2 ** 63,
  Number.MAX_SAFE_INTEGER + 2,
  1000,
  1001,
  -1001,
  3.999,
];

function randomString(): string {
  switch (int(5)) {
    case 0:
      return oneOf(NASTY_STRINGS);
    case 1:
      return Array.from({ length: int(20) }, () => String.fromCharCode(int(0x10000))).join("");
    case 2:
      return "x".repeat(int(5_000));
    case 3:
      return `task-${int(100)}`;
    default:
      return Array.from({ length: int(12) }, () => String.fromCharCode(32 + int(95))).join("");
  }
}

function randomJson(depth = 0): unknown {
  const leaf = depth > 4 || chance(0.4);
  if (leaf) {
    switch (int(6)) {
      case 0:
        return randomString();
      case 1:
        return oneOf(NASTY_NUMBERS);
      case 2:
        return chance(0.5);
      case 3:
        return null;
      case 4:
        return int(1000);
      default:
        return oneOf(NASTY_STRINGS);
    }
  }
  if (chance(0.5)) return Array.from({ length: int(5) }, () => randomJson(depth + 1));
  const obj: Record<string, unknown> = {};
  for (let i = int(5); i > 0; i--)
    obj[chance(0.2) ? oneOf(NASTY_STRINGS) : randomString().slice(0, 20)] = randomJson(depth + 1);
  return obj;
}

/** Deep nesting as text (JSON.stringify would recurse as deep). */
function deepText(depth: number): string {
  const payload = chance(0.5)
    ? "[".repeat(depth) + "]".repeat(depth)
    : '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
  return `{"task":"faults.echo","payload":${payload}}`;
}

const KNOWN = ["faults.echo", "faults.record", "faults.slow"];
const KEYS = Array.from({ length: 8 }, (_, i) => `hostile-key-${i}`);

/** A submission: often valid, otherwise one or more fields broken in some way. */
function submission(): Record<string, unknown> {
  const job: Record<string, unknown> = { task: oneOf(KNOWN) };
  if (chance(0.7)) job.payload = randomJson();
  if (chance(0.2)) job.queue = oneOf(["default", "q1", "other"]);
  if (chance(0.2)) job.priority = int(2001) - 1000;
  if (chance(0.1)) job.delayMs = int(100_000);
  if (chance(0.1)) job.idempotencyKey = oneOf(KEYS);
  const breakage = int(3);
  for (let i = 0; i < breakage; i++) {
    const field = oneOf([
      "task",
      "payload",
      "queue",
      "priority",
      "runAt",
      "delayMs",
      "maxAttempts",
      "timeoutMs",
      "idempotencyKey",
      "extra",
    ]);
    job[field] = chance(0.5)
      ? randomJson(3)
      : chance(0.5)
        ? oneOf(NASTY_NUMBERS)
        : oneOf(NASTY_STRINGS);
    if (field === "runAt" && chance(0.5)) {
      job.runAt = oneOf([
        "2025-13-01T00:00:00Z",
        "+275760-09-13T00:00:00.000Z",
        "-271821-04-20T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "0000-01-01T00:00:00Z",
        "2025-01-01T00:00:00+25:00",
        new Date(Date.now() + int(1e9)).toISOString(),
      ]);
    }
  }
  return job;
}

const BAD_IDS = [
  "0",
  "-1",
  "1.5",
  "1e3",
  "abc",
  "9223372036854775807",
  "9223372036854775808",
  "99999999999999999999999999",
  "9007199254740993",
  "%00",
  "%27%20OR%201%3D1--",
  "%F0%9F%98%80",
  "%ED%A0%80",
  "%C0%AF",
  "%",
  "1%2F2",
  "NaN",
  "Infinity",
  "0x10",
  " 1",
  "1",
  "2",
  "3",
];

const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "application/vnd.api+json",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/jsonx",
  "application/json; charset=utf-16",
  "",
  "*/*",
];

function body(): string {
  switch (int(8)) {
    case 0:
      return randomString();
    case 1:
      return JSON.stringify(randomJson());
    case 2:
      return deepText(oneOf([70, 1_000, 100_000]));
    case 3:
      return '{"task": "faults.echo", "payload": {"s": "\\u0000"}}';
    case 4:
      return '{"task": "faults.echo", "payload": "\\ud800"}';
    case 5:
      return '{"task":"faults.echo"'; // truncated
    default:
      return JSON.stringify(submission());
  }
}

type Kind =
  | "submit"
  | "batch"
  | "read"
  | "list"
  | "events"
  | "control"
  | "queue"
  | "system"
  | "random"
  | "raw"
  | "huge";

function hostileRequest(): { kind: Kind; req?: Req; raw?: string | Buffer } {
  const headers: Record<string, string> = {};
  const ct = chance(0.85) ? "application/json" : oneOf(CONTENT_TYPES);
  if (ct) headers["content-type"] = ct;
  if (chance(0.05))
    headers.authorization = oneOf(["Bearer ", "Bearer x", "Basic YTpi", "x".repeat(2000)]);
  if (chance(0.05)) headers.accept = oneOf(["text/html", "*/*", "application/xml"]);
  const roll = int(100);
  if (roll < 35) {
    if (chance(0.15))
      headers["idempotency-key"] = oneOf([...KEYS, "", "k".repeat(300), "naïve-ünïcode"]);
    return {
      kind: "submit",
      req: {
        method: "POST",
        path: "/jobs",
        headers,
        body: chance(0.7) ? JSON.stringify(submission()) : body(),
      },
    };
  }
  if (roll < 45) {
    const jobs = chance(0.1)
      ? Array.from({ length: 1_001 }, () => ({ task: "faults.echo" }))
      : Array.from({ length: int(20) }, () => submission());
    const b = chance(0.8)
      ? JSON.stringify({ jobs })
      : JSON.stringify(chance(0.5) ? jobs : { jobs: randomJson() });
    return { kind: "batch", req: { method: "POST", path: "/jobs/batch", headers, body: b } };
  }
  if (roll < 55) {
    const id = oneOf(BAD_IDS);
    return {
      kind: "read",
      req: {
        method: oneOf(["GET", "GET", "DELETE", "PUT", "PATCH"]),
        path: `/jobs/${id}`,
        headers,
      },
    };
  }
  if (roll < 63) {
    const q = new URLSearchParams();
    if (chance(0.5)) q.set("limit", String(oneOf([...NASTY_NUMBERS, "abc", "", "10"])));
    if (chance(0.5))
      q.set(
        "status",
        oneOf(["pending", "bogus", "pending,failed", "", "\u0000", "running,running"]),
      );
    if (chance(0.4)) q.set("cursor", oneOf(BAD_IDS.map(decodeURIComponentSafe)));
    if (chance(0.3)) q.set(oneOf(["queue", "task"]), randomString().slice(0, 300));
    if (chance(0.1)) q.append("limit", "5");
    return { kind: "list", req: { method: "GET", path: `/jobs?${q.toString()}`, headers } };
  }
  if (roll < 70) {
    const q = new URLSearchParams();
    if (chance(0.5)) q.set("cursor", String(oneOf([...NASTY_NUMBERS, "x", "-5"])));
    if (chance(0.5)) q.set("limit", String(oneOf([...NASTY_NUMBERS, "x"])));
    return {
      kind: "events",
      req: { method: "GET", path: `/jobs/${oneOf(BAD_IDS)}/events?${q}`, headers },
    };
  }
  if (roll < 78) {
    const action = oneOf(["cancel", "retry"]);
    const b = chance(0.4)
      ? undefined
      : chance(0.5)
        ? JSON.stringify({ reason: randomString() })
        : body();
    return {
      kind: "control",
      req: { method: "POST", path: `/jobs/${oneOf(BAD_IDS)}/${action}`, headers, body: b },
    };
  }
  if (roll < 84) {
    const name = encodePath(oneOf([...NASTY_STRINGS, "default", "q1", "a".repeat(129)])).replaceAll(
      "%2F",
      "/",
    );
    return {
      kind: "queue",
      req: {
        method: oneOf(["POST", "POST", "GET"]),
        path: `/queues/${name || "x"}/${oneOf(["pause", "resume", "stats"])}`,
        headers,
        body: chance(0.3) ? body() : undefined,
      },
    };
  }
  if (roll < 90) {
    const path = oneOf([
      "/health",
      "/ready",
      "/metrics",
      "/openapi.json",
      "/docs",
      "/docs/",
      "/docs/init.js",
      "/docs/../../package.json",
      "/docs/%2e%2e%2fpackage.json",
      "/queues",
      "/jobs/batch",
    ]);
    return {
      kind: "system",
      req: { method: oneOf(["GET", "GET", "HEAD", "POST", "OPTIONS"]), path, headers },
    };
  }
  if (roll < 95) {
    const path = `/${Array.from({ length: 1 + int(4) }, () => encodePath(randomString().slice(0, 30)) || "x").join("/")}`;
    return {
      kind: "random",
      req: {
        method: oneOf(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        path,
        headers,
        body: chance(0.5) ? body() : undefined,
      },
    };
  }
  if (roll < 99) {
    const payload = '{"task":"faults.echo"}';
    const raw = oneOf([
      `POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n${payload}`,
      `POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n${payload}`,
      `POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 50\r\n\r\n${payload}`,
      `POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 22\r\n\r\n${payload}`,
      `POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: a\u0000b\r\nContent-Length: ${payload.length}\r\n\r\n${payload}`,
      `POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\u00ff\r\nContent-Length: ${payload.length}\r\n\r\n${payload}`,
      `GET /jobs/1 HTTP/1.1\r\nHost: x\r\nX-Bad Header: y\r\n\r\n`,
      `GET /${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /jobs HTTP/9.9\r\nHost: x\r\n\r\n`,
      `BREW /jobs HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /jobs/\u0000 HTTP/1.1\r\nHost: x\r\n\r\n`,
      "\u0016\u0003\u0001\u0000\u00a5\u0001\u0000",
      `POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${payload}\r\n0\r\n\r\n`,
    ]);
    return { kind: "raw", raw: raw.includes("\u00ff") ? Buffer.from(raw, "latin1") : raw };
  }
  // Oversized: declared, chunked, and invalid UTF-8.
  const big = "x".repeat(1024 * 1024 + 10);
  const which = int(3);
  if (which === 0)
    return {
      kind: "huge",
      req: {
        method: "POST",
        path: "/jobs",
        headers,
        body: JSON.stringify({ task: "faults.echo", payload: big }),
      },
    };
  if (which === 1)
    return {
      kind: "huge",
      req: {
        method: "POST",
        path: "/jobs/batch",
        headers,
        body: JSON.stringify({ jobs: [{ task: "faults.echo", payload: big }] }),
        chunked: true,
      },
    };
  return {
    kind: "huge",
    req: {
      method: "POST",
      path: "/jobs",
      headers,
      body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    },
  };
}

/** Percent-encodes for a path; a lone surrogate becomes its raw (invalid UTF-8) bytes. */
function encodePath(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return encodeURIComponent(s.toWellFormed()).replaceAll("%EF%BF%BD", "%ED%A0%80");
  }
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** The API process's V8 heap in use, from its own Prometheus metrics. */
async function heapUsedMb(): Promise<number> {
  const res = await send({ method: "GET", path: "/metrics" });
  const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(res.body);
  return m ? Math.round(Number(m[1]) / 1024 / 1024) : -1;
}

// ---- scenario 5 -------------------------------------------------------------------------------

test("hostile requests: no 5xx, no rows from rejected requests, bounded memory", async () => {
  // Every job the API can list, live or finished (a hostile cancel of job 1 moves it to the
  // history), counted through the API so the count does not depend on how jobs are stored.
  const countRows = async () => {
    let n = 0;
    let cursor: number | null = null;
    do {
      const res = await send({
        method: "GET",
        path: `/jobs?limit=500${cursor === null ? "" : `&cursor=${cursor}`}`,
      });
      expect(res.status).toBe(200);
      const page = JSON.parse(res.body) as { jobs: unknown[]; nextCursor: number | null };
      n += page.jobs.length;
      cursor = page.nextCursor;
    } while (cursor !== null);
    return n;
  };

  // Warm up (JIT, pools, first allocations) before the memory baseline.
  for (let i = 0; i < 100; i++) {
    await send({
      method: "POST",
      path: "/jobs",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(submission()),
    });
  }
  const rowsBefore = await countRows();
  const rssBefore = rssKb(api.pid);
  let rssMax = rssBefore;
  /** RSS every 1,000 requests: a plateau means garbage, a steady climb would mean a leak. */
  const rssSamplesMb: number[] = [];
  const heapSamplesMb: number[] = [];

  const statuses: Record<number, number> = {};
  const byKind: Record<string, number> = {};
  const fiveXx: string[] = [];
  const transportErrors: string[] = [];
  let closedByServer = 0;
  let expectedRows = 0;
  let next = 0;
  const worker = async () => {
    while (next < REQUESTS) {
      const n = next++;
      const { kind, req, raw } = hostileRequest();
      byKind[kind] = (byKind[kind] ?? 0) + 1;
      try {
        let status: number;
        if (raw !== undefined) {
          status = await sendRaw(raw);
        } else if (/[^\u0021-\u007e]/.test(req!.path)) {
          status = await sendRaw(toRaw(req!));
        } else {
          const res = await send(req!);
          status = res.status;
          if (status >= 500)
            fiveXx.push(
              `${req!.method} ${req!.path.slice(0, 80)} -> ${status} ${res.body.slice(0, 300)}`,
            );
          if (req!.method === "POST" && req!.path === "/jobs" && status === 201) expectedRows++;
          if (req!.method === "POST" && req!.path === "/jobs/batch" && status === 201) {
            expectedRows += (JSON.parse(res.body) as { created: number }).created;
          }
          if (status < 200 || (status >= 300 && status < 400 && status !== 301)) {
            transportErrors.push(
              `${req!.method} ${req!.path.slice(0, 80)} -> unexpected ${status}`,
            );
          }
        }
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status >= 500) fiveXx.push(`raw -> ${status}`);
      } catch (error) {
        // The server may close a connection while the client still writes a body it refuses to
        // read (413 sends Connection: close; a 404 does not drain a large body): the client sees a
        // reset. Anything else is a failure to answer.
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ECONNRESET" || code === "EPIPE") closedByServer++;
        else transportErrors.push(`${kind}: ${(error as Error).message}`);
      }
      if (n % 1_000 === 0) {
        const rss = rssKb(api.pid);
        rssSamplesMb.push(Math.round(rss / 1024));
        heapSamplesMb.push(await heapUsedMb());
        rssMax = Math.max(rssMax, rss);
      }
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const elapsedMs = Date.now() - started;
  const rssAfter = rssKb(api.pid);
  rssMax = Math.max(rssMax, rssAfter);
  const rowsAfter = await countRows();
  const health = await send({ method: "GET", path: "/health" });

  report("scenario 5: hostile input", {
    seed: SEED,
    requests: REQUESTS,
    elapsedMs,
    byKind,
    statuses,
    responses5xx: fiveXx.length,
    transportErrors: transportErrors.length,
    closedByServer,
    rowsCreated: rowsAfter - rowsBefore,
    rowsFromAccepted: expectedRows,
    rssBeforeMb: Math.round(rssBefore / 1024),
    rssAfterMb: Math.round(rssAfter / 1024),
    rssMaxMb: Math.round(rssMax / 1024),
    rssSamplesMb,
    heapUsedSamplesMb: heapSamplesMb,
    processAlive: api.alive,
    examples5xx: fiveXx.slice(0, 5),
    exampleTransportErrors: transportErrors.slice(0, 5),
  });
  expect(fiveXx).toEqual([]);
  // The heap figure comes from the API's own metrics, under the standard nodejs_* name.
  expect(heapSamplesMb.every((mb) => mb >= 0)).toBe(true);
  expect(rowsAfter - rowsBefore).toBe(expectedRows);
  expect(api.alive).toBe(true);
  expect(health.status).toBe(200);
  // 16 requests in flight with bodies of at most 1 MiB: a few hundred MB would mean a leak.
  expect(rssMax).toBeLessThan(512 * 1024);
  expect(transportErrors).toEqual([]);
  expect(closedByServer).toBeLessThan(REQUESTS * 0.02);
});

// ---- scenario 6 -------------------------------------------------------------------------------

test("200 concurrent submissions over 20 idempotency keys make exactly 20 jobs", async () => {
  const prefix = `idem-${SEED}-`;
  const keys = Array.from({ length: 20 }, (_, i) => `${prefix}${i}`);
  const order = keys.flatMap((key) =>
    Array.from({ length: 10 }, (_, j) => ({ key, viaHeader: j % 2 === 0 })),
  );
  order.sort(() => random() - 0.5);
  const burstAgent = new HttpAgent({ keepAlive: true, maxSockets: 200 });
  const results = await Promise.all(
    order.map(
      ({ key, viaHeader }) =>
        new Promise<{ key: string; status: number; id: number }>((resolve, reject) => {
          const payload = JSON.stringify({
            task: "faults.echo",
            payload: { key },
            ...(viaHeader ? {} : { idempotencyKey: key }),
          });
          const r = httpRequest(
            {
              host: "127.0.0.1",
              port,
              method: "POST",
              path: "/jobs",
              agent: burstAgent,
              headers: {
                "content-type": "application/json",
                ...(viaHeader ? { "idempotency-key": key } : {}),
              },
            },
            (res) => {
              let text = "";
              res.on("data", (c) => {
                text += c;
              });
              res.on("end", () => {
                const parsed = JSON.parse(text) as { job?: { id: number } };
                resolve({ key, status: res.statusCode ?? 0, id: Number(parsed.job?.id) });
              });
            },
          );
          r.on("error", reject);
          r.end(payload);
        }),
    ),
  );
  burstAgent.destroy();
  const rows = await db.query<{ key: string; id: number }>(
    `SELECT idempotency_key AS key, id::int AS id FROM {{schema}}.jobs WHERE idempotency_key LIKE $1`,
    [`${prefix}%`],
  );
  const idsPerKey = new Map<string, Set<number>>();
  for (const r of results) idsPerKey.set(r.key, (idsPerKey.get(r.key) ?? new Set()).add(r.id));
  const statuses: Record<number, number> = {};
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const created = new Map<string, number>();
  for (const r of results) if (r.status === 201) created.set(r.key, (created.get(r.key) ?? 0) + 1);

  report("scenario 6: idempotency under load", {
    submissions: results.length,
    keys: keys.length,
    jobsInDb: rows.length,
    statuses,
    keysWithOneId: [...idsPerKey.values()].filter((s) => s.size === 1).length,
  });
  expect(rows.length).toBe(20);
  expect(statuses).toEqual({ 200: 180, 201: 20 });
  for (const key of keys) {
    const ids = idsPerKey.get(key)!;
    expect(ids.size, key).toBe(1);
    expect(rows.find((r) => r.key === key)?.id).toBe([...ids][0]);
    expect(created.get(key)).toBe(1);
  }
});
