import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, redactConfig, SETTING_LIST } from "../../src/config.ts";
import { defaultText, SETTING_DEFAULTS } from "../../src/settings.ts";

function problems(env: Record<string, string>, flags = {}): string[] {
  try {
    loadConfig(env, flags, "/srv/app");
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("has a default for everything", () => {
    const config = loadConfig({}, {}, "/srv/app");
    expect(config).toMatchObject({
      databaseUrl: undefined,
      port: 3_000,
      host: "127.0.0.1",
      schema: "pgwake",
      queues: null,
      concurrency: 16,
      claimCooldownMs: 5,
      retentionMs: 7 * 86_400_000,
      notify: true,
      builtinTasks: ["demo"],
      unknownTasks: "refuse",
      docsPublic: true,
      apiKeys: [],
      bodyLimitBytes: 1_048_576,
      dataDir: "/srv/app/.pgwake/postgres",
      embeddedPort: 54_329,
    });
  });

  it("reads the environment, and flags override it", () => {
    const config = loadConfig(
      {
        DATABASE_URL: "postgres://app:pw@db:5432/app",
        PORT: "8080",
        PGWAKE_QUEUES: "emails, reports ,",
        PGWAKE_CONCURRENCY: "4",
        PGWAKE_CLAIM_COOLDOWN_MS: "0",
        PGWAKE_NOTIFY: "off",
        PGWAKE_RETENTION: "12h",
        PGWAKE_API_KEYS: "k1,k2",
        PGWAKE_BODY_LIMIT: "512kb",
        PGWAKE_TASKS: "./tasks.ts",
      },
      { port: "9090", notify: true, concurrency: "2" },
      "/srv/app",
    );
    expect(config).toMatchObject({
      databaseUrl: "postgres://app:pw@db:5432/app",
      port: 9_090,
      queues: [{ name: "emails" }, { name: "reports" }],
      concurrency: 2,
      claimCooldownMs: 0,
      notify: true,
      retentionMs: 12 * 3_600_000,
      apiKeys: ["k1", "k2"],
      bodyLimitBytes: 512 * 1_024,
      tasks: "/srv/app/tasks.ts",
    });
  });

  it("reads queues with their slots, and * as every queue", () => {
    expect(loadConfig({ PGWAKE_QUEUES: "critical:4, bulk:12,default" }).queues).toEqual([
      { name: "critical", slots: 4 },
      { name: "bulk", slots: 12 },
      { name: "default" },
    ]);
    expect(loadConfig({ PGWAKE_QUEUES: "*" }).queues).toBeNull();
    expect(loadConfig({ PGWAKE_QUEUES: "emails:eu,emails:eu:3" }).queues).toEqual([
      { name: "emails:eu" },
      { name: "emails:eu", slots: 3 },
    ]);
    expect(problems({ PGWAKE_QUEUES: "bulk:0" }).join("\n")).toMatch(/"bulk:0": a queue is a name/);
    expect(problems({ PGWAKE_QUEUES: "*,bulk" }).join("\n")).toMatch(/"\*": a queue is a name/);
  });

  it("treats empty variables as unset and understands forever", () => {
    expect(loadConfig({ PORT: "", PGWAKE_RETENTION: "forever" }).port).toBe(3_000);
    expect(loadConfig({ PGWAKE_RETENTION: "0" }).retentionMs).toBeNull();
  });

  it("reports every problem at once, naming where each value came from", () => {
    const found = problems(
      {
        PORT: "70000",
        PGWAKE_CONCURRENCY: "lots",
        PGWAKE_NOTIFY: "maybe",
        PGWAKE_RETENTION: "7 days",
        PGWAKE_SCHEMA: "Bad-Name",
        DATABASE_URL: "mysql://x",
        PGWAKE_HEARTBEAT_MS: "60000",
      },
      { queues: "ok,not ok" },
    );
    expect(found).toHaveLength(8);
    expect(found.join("\n")).toMatch(/^PGWAKE_HEARTBEAT_MS: must be shorter/m);
    expect(found.join("\n")).toMatch(/^PORT: must be at most 65535/m);
    expect(found.join("\n")).toMatch(/^PGWAKE_CONCURRENCY: must be a number/m);
    expect(found.join("\n")).toMatch(/^PGWAKE_NOTIFY: must be on or off/m);
    expect(found.join("\n")).toMatch(/^PGWAKE_RETENTION:/m);
    expect(found.join("\n")).toMatch(/^PGWAKE_SCHEMA:/m);
    expect(found.join("\n")).toMatch(/^DATABASE_URL: must be a postgres/m);
    expect(found.join("\n")).toMatch(/^--queues: "not ok": a queue is a name/m);
    // The heartbeat is checked against the lease even though other settings are broken.
    expect(problems({ PGWAKE_HEARTBEAT_MS: "60000", PORT: "x" }).join("\n")).toMatch(
      /PGWAKE_HEARTBEAT_MS: must be shorter than the lease/,
    );
  });

  it("never echoes a database URL back, even an invalid one", () => {
    const found = problems({ DATABASE_URL: "mysql://u:hunter2@x" });
    expect(found.join("\n")).not.toContain("hunter2");
  });
});

describe("redactConfig", () => {
  it("hides the password and the API keys", () => {
    const config = loadConfig({
      DATABASE_URL: "postgres://app:hunter2@db:5432/app",
      PGWAKE_API_KEYS: "secret-key-1,secret-key-2",
    });
    const shown = JSON.stringify(redactConfig(config));
    expect(shown).not.toContain("hunter2");
    expect(shown).not.toContain("secret-key");
    expect(shown).toContain("db:5432");
    expect(redactConfig(loadConfig({})).database).toBe("embedded");
  });
});

describe("the settings table", () => {
  it("documents one environment variable and one flag per setting", () => {
    const envs = SETTING_LIST.map((s) => s.env);
    const flags = SETTING_LIST.map((s) => s.flag);
    expect(new Set(envs).size).toBe(envs.length);
    expect(new Set(flags).size).toBe(flags.length);
    expect(Object.keys(loadConfig({})).sort()).toEqual(SETTING_LIST.map((s) => s.key).sort());
  });

  it("gives every default once: loadConfig without input is SETTING_DEFAULTS (paths resolved)", () => {
    const config = loadConfig({}, {}, "/srv/app");
    expect({ ...config, dataDir: SETTING_DEFAULTS.dataDir }).toEqual(SETTING_DEFAULTS);
  });

  it("parses every default's own text back to the default", () => {
    // The text shown in --help and the docs means what the default is.
    for (const s of SETTING_LIST) {
      const shown = defaultText(s);
      // "(none: open API)" and the like describe an unset value.
      if (shown.startsWith("(")) continue;
      const parsed = s.parse.safeParse(shown);
      expect(parsed.success, `${s.env}=${shown}`).toBe(true);
      expect(parsed.data, s.env).toEqual(s.default);
    }
  });
});

describe("PGWAKE_BUILTIN_TASKS", () => {
  it("turns built-in task groups on one by one", () => {
    expect(loadConfig({}).builtinTasks).toEqual(["demo"]);
    expect(loadConfig({ PGWAKE_BUILTIN_TASKS: "demo,http" }).builtinTasks).toEqual([
      "demo",
      "http",
    ]);
    expect(loadConfig({ PGWAKE_BUILTIN_TASKS: "http" }).builtinTasks).toEqual(["http"]);
    expect(loadConfig({ PGWAKE_BUILTIN_TASKS: "all" }).builtinTasks).toEqual(["demo", "http"]);
    expect(loadConfig({ PGWAKE_BUILTIN_TASKS: "none" }).builtinTasks).toEqual([]);
    expect(loadConfig({ PGWAKE_BUILTIN_TASKS: "off" }).builtinTasks).toEqual([]);
    expect(problems({ PGWAKE_BUILTIN_TASKS: "demo,smtp" })).toEqual([
      'PGWAKE_BUILTIN_TASKS: must be a comma-separated list of demo, http, or all, or none (got "demo,smtp")',
    ]);
  });
});
