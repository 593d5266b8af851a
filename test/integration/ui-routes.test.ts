import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.ts";
import { SchemaSql } from "../../src/db/sql.ts";
import { addMinuteCounts } from "../../src/jobs/stats.ts";
import { killAll } from "../fixtures/cli/spawn.ts";
import { type Service, startService } from "../fixtures/ui/service.ts";
import { echo } from "../fixtures/ui/tasks.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

// The dashboard's routes without a browser: served by `pgwake api` unless PGWAKE_UI is off, pages
// that hold no data and need no key under a strict CSP, files from the package and nothing else,
// and the two reads it draws with (behind the key): the fleet and the per-minute counts.

const KEY = "ui-routes-key";

/** `GET /stats/minutes`'s answer, or its refusal. */
interface MinutesAnswer {
  from: string;
  minutes: Array<{ queue: string; minute: string; completed: number }>;
  error: { code: string };
}

describe("the dashboard's routes", () => {
  let db: TestDb;
  let on: Service;
  let off: Service;
  const auth = { authorization: `Bearer ${KEY}` };

  beforeAll(async () => {
    db = await createTestDb("ui_routes", { tasks: [echo] });
    [on, off] = await Promise.all([
      startService(db.url, db.schema, { PGWAKE_API_KEYS: KEY }, "api"),
      startService(db.url, db.schema, { PGWAKE_API_KEYS: KEY, PGWAKE_UI: "off" }, "api"),
    ]);
  }, 90_000);
  afterAll(async () => {
    await Promise.all([on?.stop(), off?.stop()]);
    killAll();
    await db?.close();
  });

  it("serves every page without a key, with no data in it, under a strict Content-Security-Policy", async () => {
    for (const path of ["/ui", "/ui/jobs", "/ui/jobs/42", "/ui/queues/mail", "/ui/schedules"]) {
      const res = await fetch(`${on.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/html/);
      const csp = res.headers.get("content-security-policy") ?? "";
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("connect-src 'self'");
      expect(csp).not.toContain("unsafe-inline");
      const html = await res.text();
      // Its files are its own, by relative address (the app may be mounted under a prefix).
      expect(html).toMatch(/<script type="module" src="(\.\.\/)*(\.\/)?ui\/assets\/app\.js">/);
      expect(html).not.toMatch(/<script>|\son[a-z]+=|https?:\/\//);
    }
    // What the path holds is escaped, never markup.
    const hostile = await fetch(`${on.url}/ui/queues/%3Cimg%20src%3Dx%3E`);
    expect(await hostile.text()).toContain("&lt;img src=x&gt;");
  });

  it("serves the dashboard's files from the package, and no other", async () => {
    const files: Array<[string, RegExp]> = [
      ["app.js", /^text\/javascript/],
      ["page-job.js", /^text\/javascript/],
      ["app.css", /^text\/css/],
      ["favicon.svg", /^image\/svg\+xml/],
    ];
    for (const [file, type] of files) {
      const res = await fetch(`${on.url}/ui/assets/${file}`);
      expect(res.status, file).toBe(200);
      expect(res.headers.get("content-type")).toMatch(type);
      expect((await res.text()).length).toBeGreaterThan(100);
    }
    for (const file of ["nope.js", "..%2Fpages.ts", "pages.ts", "%2E%2E"]) {
      const res = await fetch(`${on.url}/ui/assets/${file}`);
      expect(res.status, file).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("NOT_FOUND");
    }
    // No file asks for anything beyond this server.
    for (const file of ["app.js", "api.js", "app.css", "charts.js"]) {
      const text = await (await fetch(`${on.url}/ui/assets/${file}`)).text();
      expect(text, file).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    }
  });

  it("is not served with PGWAKE_UI=off, nor by createApp unless asked", async () => {
    expect((await fetch(`${off.url}/ui`)).status).toBe(404);
    expect((await fetch(`${off.url}/ui/assets/app.js`)).status).toBe(404);
    expect((await fetch(`${off.url}/workers`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${off.url}/jobs`, { headers: auth })).status).toBe(200);
    const embedded = createApp({ pgwake: db.pgwake });
    expect((await embedded.request("/ui")).status).toBe(404);
    expect((await createApp({ pgwake: db.pgwake, ui: true }).request("/ui")).status).toBe(200);
  });

  it("documents the pages as public and the reads as needing the key", async () => {
    const doc = (await (await fetch(`${on.url}/openapi.json`, { headers: auth })).json()) as {
      paths: Record<string, Record<string, { security: unknown[]; tags: string[] }>>;
    };
    for (const path of ["/ui", "/ui/jobs", "/ui/jobs/{id}", "/ui/queues/{name}", "/ui/schedules"]) {
      expect(doc.paths[path]?.get, path).toMatchObject({ security: [], tags: ["dashboard"] });
    }
    expect(doc.paths["/ui/assets/{file}"]?.get?.security).toEqual([]);
    for (const path of ["/workers", "/stats/minutes"]) {
      expect(doc.paths[path]?.get?.security, path).toEqual([{ bearer: [] }]);
    }
  });

  it("lists the live workers (the fleet) behind the key", async () => {
    expect((await fetch(`${on.url}/workers`)).status).toBe(401);
    const sql = new SchemaSql(db.schema);
    const worker = db.pgwake.worker({ queues: ["fleet-a", "fleet-b"], concurrency: 3 });
    await worker.start();
    try {
      const { workers } = (await (await fetch(`${on.url}/workers`, { headers: auth })).json()) as {
        workers: Array<Record<string, unknown>>;
      };
      const mine = workers.find((w) => w.id === worker.id);
      expect(mine).toMatchObject({
        pid: process.pid,
        queues: ["fleet-a", "fleet-b"],
        concurrency: 3,
        running: 0,
        runningByQueue: {},
      });
      expect(new Date(String(mine!.lastSeenAt)).toISOString()).toBe(mine!.lastSeenAt);
      // A worker whose lease ran out is not in the fleet.
      await db.query(
        `UPDATE ${sql.render("{{schema}}")}.workers SET lease_expires_at = now() - interval '1 second' WHERE id = $1`,
        [worker.id],
      );
      const after = (await (await fetch(`${on.url}/workers`, { headers: auth })).json()) as {
        workers: Array<{ id: string }>;
      };
      expect(after.workers.map((w) => w.id)).not.toContain(worker.id);
    } finally {
      await worker.stop({ graceMs: 1_000 });
    }
  });

  it("answers the per-minute counts of the last minutes, of every queue or one", async () => {
    const sql = new SchemaSql(db.schema);
    const [{ now }] = (await db.query<{ now: Date }>(
      "SELECT date_trunc('minute', now()) AS now",
    )) as [{ now: Date }];
    const minute = (ago: number) => new Date(now.getTime() - ago * 60_000);
    await db.query("INSERT INTO {{schema}}.queues (name) VALUES ('stats-a'), ('stats-b')");
    await addMinuteCounts(db.pool, sql, [
      {
        queue: "stats-a",
        minute: minute(0),
        completed: 5,
        failed: 1,
        cancelled: 0,
        retried: 2,
        runMs: 80,
        waitMs: 40,
      },
      {
        queue: "stats-a",
        minute: minute(3),
        completed: 7,
        failed: 0,
        cancelled: 1,
        retried: 0,
        runMs: 70,
        waitMs: 14,
      },
      {
        queue: "stats-a",
        minute: minute(90),
        completed: 100,
        failed: 0,
        cancelled: 0,
        retried: 0,
        runMs: 1,
        waitMs: 1,
      },
      {
        queue: "stats-b",
        minute: minute(1),
        completed: 9,
        failed: 0,
        cancelled: 0,
        retried: 0,
        runMs: 9,
        waitMs: 9,
      },
    ]);
    const read = async (query: string) => {
      const res = await fetch(`${on.url}/stats/minutes${query}`, { headers: auth });
      return { status: res.status, body: (await res.json()) as MinutesAnswer };
    };
    const all = await read("");
    expect(all.status).toBe(200);
    expect(Date.parse(all.body.from)).toBe(minute(59).getTime());
    const mine = all.body.minutes.filter((m) => m.queue.startsWith("stats-"));
    expect(mine).toEqual([
      {
        queue: "stats-a",
        minute: minute(3).toISOString(),
        completed: 7,
        failed: 0,
        cancelled: 1,
        retried: 0,
        runMs: 70,
        waitMs: 14,
      },
      expect.objectContaining({ queue: "stats-a", minute: minute(0).toISOString(), completed: 5 }),
      expect.objectContaining({ queue: "stats-b", minute: minute(1).toISOString(), completed: 9 }),
    ]);
    const one = await read("?queue=stats-b&minutes=2");
    expect(one.body.minutes.map((m) => m.completed)).toEqual([9]);
    const day = await read("?queue=stats-a&minutes=1440");
    expect(day.body.minutes.map((m) => m.completed)).toEqual([100, 7, 5]);
    for (const bad of [
      "?minutes=0",
      "?minutes=1441",
      "?minutes=x",
      "?queue=bad%20name",
      "?limit=1",
    ]) {
      const res = await read(bad);
      expect(res.status, bad).toBe(400);
      expect(res.body.error.code).toBe("VALIDATION_FAILED");
    }
  });
});
