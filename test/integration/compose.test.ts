import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig } from "../../src/config.ts";
import { finished, killAll, pgwake } from "../fixtures/cli/spawn.ts";
import { databaseUrl } from "../helpers/db.ts";
import { freePort } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";

// Docker cannot run on the build machine, so compose.yaml and the Dockerfile are checked here:
// structure, dependencies, health checks, ports, and that every pgwake service's environment is
// a valid pgwake configuration.

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] | string; interval?: string; retries?: number };
  depends_on?: Record<string, { condition: string }>;
  restart?: string;
  container_name?: string;
  stop_grace_period?: string;
}

const compose = parse(readFileSync(new URL("../../compose.yaml", import.meta.url), "utf8"), {
  merge: true,
}) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const { services } = compose;

/**
 * The environment compose gives a service: `${VAR:-default}` is VAR or the default; `${VAR:?msg}`
 * is VAR, and compose refuses to start without it (`required` names those left unset).
 */
function withDefaults(
  env: Record<string, string> = {},
  shell: Record<string, string> = { PGWAKE_API_KEYS: "k-test-1" },
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).map(([key, value]) => [
      key,
      String(value)
        .replace(/\$\{([A-Z_]+):-([^}]*)\}/g, (_m, name: string, fallback: string) =>
          shell[name] ? shell[name] : fallback,
        )
        .replace(/\$\{([A-Z_]+):\?([^}]*)\}/g, (_m, name: string, message: string) => {
          if (!shell[name]) throw new Error(`compose would refuse to start: ${message}`);
          return shell[name];
        }),
    ]),
  );
}

describe("compose.yaml", () => {
  it("has postgres, migrate, api and worker", () => {
    expect(Object.keys(services).sort()).toEqual(["api", "migrate", "postgres", "worker"]);
  });

  it("runs Postgres 18 with a health check and a named volume", () => {
    const postgres = services.postgres!;
    expect(postgres.image).toMatch(/^postgres:18(\.|-|$)/);
    const test = postgres.healthcheck?.test;
    expect(Array.isArray(test) ? test.join(" ") : test).toContain("pg_isready");
    const volume = postgres.volumes?.[0]?.split(":")[0];
    expect(volume).toBeDefined();
    expect(compose.volumes).toHaveProperty(volume!);
  });

  it("migrates once, after Postgres is healthy, and starts api and worker after that", () => {
    expect(services.migrate!.command).toEqual(["migrate"]);
    expect(services.migrate!.restart).toBe("no");
    expect(services.migrate!.depends_on).toEqual({ postgres: { condition: "service_healthy" } });
    for (const name of ["api", "worker"]) {
      expect(services[name]!.depends_on).toEqual({
        migrate: { condition: "service_completed_successfully" },
      });
    }
    expect(services.api!.command).toEqual(["api"]);
    expect(services.worker!.command).toEqual(["worker"]);
  });

  it("publishes the API on 3000 with a readiness health check", () => {
    const api = services.api!;
    expect(api.ports).toEqual(["3000:3000"]);
    expect(withDefaults(api.environment)).toMatchObject({ HOST: "0.0.0.0", PORT: "3000" });
    const test = api.healthcheck?.test;
    expect(Array.isArray(test) ? test.join(" ") : test).toContain("http://127.0.0.1:3000/ready");
  });

  it("requires API keys: compose refuses to start the api without PGWAKE_API_KEYS", () => {
    const api = services.api!;
    expect(api.environment?.PGWAKE_API_KEYS).toMatch(/^\$\{PGWAKE_API_KEYS:\?.+\}$/);
    expect(() => withDefaults(api.environment, {})).toThrow(/PGWAKE_API_KEYS/);
    const config = loadConfig(withDefaults(api.environment, { PGWAKE_API_KEYS: "k1,k2" }));
    expect(config.apiKeys).toEqual(["k1", "k2"]);
  });

  it("runs the demo built-ins only, the same in api and workers (http.request off)", () => {
    const api = loadConfig(withDefaults(services.api!.environment));
    const worker = loadConfig(withDefaults(services.worker!.environment));
    expect(api.builtinTasks).toEqual(["demo"]);
    expect(worker.builtinTasks).toEqual(api.builtinTasks);
    const opted = withDefaults(services.worker!.environment, { PGWAKE_BUILTIN_TASKS: "demo,http" });
    expect(loadConfig(opted).builtinTasks).toEqual(["demo", "http"]);
  });

  it("probes workers on their own health port (not published), serving every queue by default", () => {
    const worker = services.worker!;
    const env = withDefaults(worker.environment);
    const config = loadConfig(env);
    expect(config.healthPort).toBe(9090);
    expect(config.queues).toBeNull();
    const test = worker.healthcheck?.test;
    expect(Array.isArray(test) ? test.join(" ") : test).toContain("http://127.0.0.1:9090/ready");
    // The connection budget the comments state: 1 LISTEN connection + the pool per worker.
    expect(config.poolSize).toBe(4);
  });

  it("lets workers scale: no ports, no fixed container name, a stop grace above the drain", () => {
    const worker = services.worker!;
    expect(worker.ports).toBeUndefined();
    expect(worker.container_name).toBeUndefined();
    const graceMs = Number(withDefaults(worker.environment).PGWAKE_SHUTDOWN_GRACE_MS);
    expect(Number.parseInt(worker.stop_grace_period!, 10) * 1_000).toBeGreaterThan(graceMs);
  });

  it("gives every pgwake service the same image and a valid configuration", () => {
    const pgwakeServices = ["migrate", "api", "worker"].map((name) => services[name]!);
    for (const service of pgwakeServices) {
      expect(service.image).toBe("pgwake:local");
      expect(service.build).toBe(".");
      const env = withDefaults(service.environment);
      const url = new URL(env.DATABASE_URL!);
      expect(url.hostname).toBe("postgres");
      expect(url.pathname).toBe(`/${withDefaults(services.postgres!.environment).POSTGRES_DB}`);
      expect(url.username).toBe(withDefaults(services.postgres!.environment).POSTGRES_USER);
      expect(() => loadConfig(env)).not.toThrow();
    }
  });
});

describe("Dockerfile", () => {
  const text = readFileSync(new URL("../../Dockerfile", import.meta.url), "utf8");
  const stages = [...text.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => ({
    image: m[1],
    name: m[2],
  }));
  const final = text.slice(text.lastIndexOf("\nFROM "));

  it("is multi-stage on Node 24 slim", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.image).toMatch(/^node:24(\.\d+)*-slim$/);
  });

  it("installs production dependencies only, and the final stage runs as a non-root user", () => {
    expect(text).toMatch(/npm ci[^\n]*--omit=dev/);
    expect(final).toMatch(/^COPY --from=\S+ [^\n]*node_modules/m);
    expect(final).not.toMatch(/npm (ci|install)/);
    const user = /^USER\s+(\S+)/m.exec(final)?.[1];
    expect(user).toBeDefined();
    expect(["root", "0"]).not.toContain(user);
  });

  it("runs the pgwake command, compiled: dist/ from a build stage, no TypeScript sources", () => {
    expect(final).toMatch(/ENTRYPOINT \["node", "bin\/pgwake\.js"\]/);
    expect(final).toMatch(/HOST=0\.0\.0\.0/);
    const build = stages.find((stage) => stage.name === "build");
    expect(build).toBeDefined();
    expect(text).toMatch(/RUN npm run build/);
    expect(final).toMatch(/^COPY --from=build [^\n]*\/dist \.\/dist$/m);
    expect(final).not.toMatch(/^COPY [^\n]* src /m);
    expect(final).toMatch(/^COPY [^\n]*db\/migrations/m);
  });

  it("copies only what runs: no tests, no dev tooling in the context", () => {
    const ignore = readFileSync(new URL("../../.dockerignore", import.meta.url), "utf8");
    for (const entry of ["node_modules", ".git", ".pgwake", "test"]) {
      expect(ignore.split("\n")).toContain(entry);
    }
  });
});

describe("the api's compose health check, run against a real `pgwake api` with keys set", () => {
  const schema = `t_compose_${randomBytes(3).toString("hex")}`;
  let pool: pg.Pool;
  beforeAll(() => {
    pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 });
  });
  afterAll(async () => {
    killAll();
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  /** The health check's command as compose runs it in the container, on the test's port. */
  function healthCheck(port: number): Promise<number | null> {
    const test = services.api!.healthcheck!.test as string[];
    expect(test.slice(0, 3)).toEqual(["CMD", "node", "-e"]);
    const script = test[3]!.replace("127.0.0.1:3000", `127.0.0.1:${port}`);
    return new Promise((resolve) => {
      spawn(process.execPath, ["-e", script], { stdio: "ignore" }).on("close", resolve);
    });
  }

  it("fails before migration and passes once the schema is current", async () => {
    const port = await freePort();
    const env = {
      ...withDefaults(services.api!.environment, { PGWAKE_API_KEYS: "k-compose-test" }),
      DATABASE_URL: databaseUrl(),
      PGWAKE_SCHEMA: schema,
      HOST: "127.0.0.1",
      PORT: String(port),
    };
    const api = pgwake(["api"], env);
    await waitFor(() => api.logs().some((l) => String(l.msg).includes("API is ready")), {
      timeoutMs: 30_000,
      message: "pgwake api to listen",
    });
    // Not migrated yet: not ready, so compose would not start what depends on it.
    expect(await healthCheck(port)).toBe(1);
    expect((await finished(pgwake(["migrate"], env))).code).toBe(0);
    await waitFor(async () => (await healthCheck(port)) === 0, {
      timeoutMs: 30_000,
      message: "the health check to pass",
    });
    // The keys are in force: a job route without one is refused.
    expect((await fetch(`http://127.0.0.1:${port}/jobs/1`)).status).toBe(401);
    api.child.kill("SIGTERM");
    expect((await finished(api)).code).toBe(0);
  });
});
