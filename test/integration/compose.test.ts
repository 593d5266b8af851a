import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig } from "../../src/config.ts";

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

/** `${VAR:-default}` → default, as compose does when VAR is unset. */
function withDefaults(env: Record<string, string> = {}): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).map(([key, value]) => [
      key,
      String(value).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, "$1"),
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

  it("runs the pgwake command", () => {
    expect(final).toMatch(/ENTRYPOINT \["node", "bin\/pgwake\.js"\]/);
    expect(final).toMatch(/HOST=0\.0\.0\.0/);
  });

  it("copies only what runs: no tests, no dev tooling in the context", () => {
    const ignore = readFileSync(new URL("../../.dockerignore", import.meta.url), "utf8");
    for (const entry of ["node_modules", ".git", ".pgwake", "test"]) {
      expect(ignore.split("\n")).toContain(entry);
    }
  });
});
