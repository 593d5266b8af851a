import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask } from "../../src/index.ts";
import { finished, killAll, pgwake } from "../fixtures/cli/spawn.ts";
import { limitedClaims } from "../flow/fixtures/claims.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";

// `pgwake queues limits` and `pgwake queues keys` as child processes (issue 12).

const plain = defineTask({ name: "flow.plain", handler: () => {} });

let db: TestDb;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDb("flow_cli", { tasks: [plain] });
  env = { DATABASE_URL: db.url, PGWAKE_SCHEMA: db.schema };
  // A known queue (it has a job).
  await db.pgwake.untyped().enqueue("flow.plain", {}, { queue: "emails" });
});

afterAll(async () => {
  killAll();
  await db?.close();
});

async function run(args: string[], runEnv = env) {
  const child = pgwake(args, runEnv);
  const { code } = await finished(child);
  return { code, out: child.stdout(), err: child.stderr() };
}

describe("pgwake queues limits", () => {
  it("sets every limit from flags, shows them, and clears them", async () => {
    const set = await run([
      "queues",
      "limits",
      "emails",
      "--concurrency",
      "8",
      "--key-concurrency",
      "2",
      "--rate",
      "100/s",
      "--burst",
      "5",
      "--key-rate",
      "5/1m",
      "--fair",
      "--json",
    ]);
    expect(set.code, set.err).toBe(0);
    expect(JSON.parse(set.out)).toMatchObject({
      name: "emails",
      limited: true,
      source: "operator",
      concurrency: 8,
      keyConcurrency: 2,
      rateLimit: 100,
      ratePeriodMs: 1_000,
      rateBurst: 5,
      keyRateLimit: 5,
      keyRatePeriodMs: 60_000,
      fair: true,
    });
    expect((await db.pgwake.queueLimits("emails"))[0]).toMatchObject({
      concurrency: 8,
      keyConcurrency: 2,
      rateLimit: 100,
      rateBurst: 5,
      keyRateLimit: 5,
      keyRatePeriodMs: 60_000,
      fair: true,
    });

    // Shown (no flag), and cleared (another queue, at the same time: a process takes seconds here).
    await db.pgwake.setQueueLimits("digests", { concurrency: 3 });
    const [shown, cleared] = await Promise.all([
      run(["queues", "limits", "emails"]),
      run(["queues", "limits", "digests", "--clear"]),
    ]);
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(/CONCURRENCY/);
    expect(shown.out).toMatch(/emails\s+8\s+2\s+100\/s burst 5\s+5\/m\s+yes/);
    expect(cleared.code, cleared.err).toBe(0);
    expect(cleared.out).toMatch(/no limits/);
    expect((await db.pgwake.queueLimits("digests"))[0]).toMatchObject({
      limited: false,
      source: null,
    });
  });

  it("refuses bad flags with exit 2 before touching the database", async () => {
    // A database nobody answers at: had the command tried it, it would fail otherwise (exit 1).
    const nowhere = {
      DATABASE_URL: "postgres://nobody@127.0.0.1:9/none",
      PGWAKE_SCHEMA: db.schema,
    };
    const cases = [
      ["emails", "--concurrency", "0"],
      ["emails", "--key-concurrency", "1.5"],
      ["emails", "--rate", "100"],
      ["emails", "--key-rate", "5/1y"],
      ["emails", "--burst", "2"],
      ["emails", "--clear", "--concurrency", "2"],
      ["bad name", "--concurrency", "1"],
    ];
    // Each command on its own process, all at once (a process takes seconds on a loaded box).
    const results = await Promise.all([
      ...cases.map((args) => run(["queues", "limits", ...args], nowhere)),
      run(["queues", "keys", "emails", "--limit", "0"], nowhere),
    ]);
    for (const [i, result] of results.entries()) {
      const what = (cases[i] ?? ["keys --limit 0"]).join(" ");
      expect(result.code, `${what}: ${result.err}`).toBe(2);
      expect(result.err, what).toMatch(/--|queue name/);
    }
  });

  it("refuses a queue nobody knows (exit 1) unless --create is given", async () => {
    const [refused, created] = await Promise.all([
      run(["queues", "limits", "emials", "--concurrency", "2"]),
      run(["queues", "limits", "reports", "--concurrency", "2", "--create"]),
    ]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/no queue "emials" is known.*--create/s);
    expect(await db.pgwake.queueLimits("emials")).toEqual([]);
    expect(created.code, created.err).toBe(0);
    expect((await db.pgwake.queueLimits("reports"))[0]).toMatchObject({ concurrency: 2 });
  });
});

describe("pgwake queues keys", () => {
  it("lists the busiest keys with their running and ready jobs", async () => {
    await db.pgwake.setQueueLimits("tenants", { keyConcurrency: 1 });
    for (const key of ["acme", "acme", "acme", "initech"]) {
      await db.pgwake
        .untyped()
        .enqueue("flow.plain", {}, { queue: "tenants", concurrencyKey: key });
    }
    await db.pgwake.untyped().enqueue("flow.plain", {}, { queue: "tenants" });
    await limitedClaims(db).claim("w-cli", "tenants", ["flow.plain"]);

    const [json, table] = await Promise.all([
      run(["queues", "keys", "tenants", "--json"]),
      run(["queues", "keys", "tenants", "--limit", "2"]),
    ]);
    expect(json.code, json.err).toBe(0);
    expect(JSON.parse(json.out)).toEqual({
      keys: [
        { key: "", running: 1, tokens: null, pending: 0 },
        { key: "acme", running: 1, tokens: null, pending: 2 },
        { key: "initech", running: 1, tokens: null, pending: 0 },
      ],
    });
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/KEY\s+RUNNING\s+TOKENS\s+READY/);
    // The jobs without a key share the key shown as (none).
    expect(table.out).toMatch(/\(none\)\s+1\s+-\s+0/);
    expect(table.out).toMatch(/acme\s+1\s+-\s+2/);
    expect(table.out).not.toMatch(/initech/);
  });
});

describe("reading a queue nobody knows", () => {
  // `pgwake queues limits <name>` (no flag) and `pgwake queues keys <name>` printed "no limits" /
  // "no concurrency keys" and exited 0 for a misspelt queue, where the HTTP API answers 404
  // QUEUE_NOT_FOUND and setting limits exits 1. Found by this test.
  it("exits 1, as setting does and as the HTTP API answers 404", async () => {
    const [limits, keys] = await Promise.all([
      run(["queues", "limits", "emials"]),
      run(["queues", "keys", "emials"]),
    ]);
    expect(limits.code, limits.out).toBe(1);
    expect(keys.code, keys.out).toBe(1);
    expect(limits.err).toMatch(/no queue "emials" is known/);
  });
});
