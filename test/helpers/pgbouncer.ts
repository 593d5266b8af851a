import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./postgres.ts";
import { waitFor } from "./wait.ts";

// A real PgBouncer (Debian's package, installed by .ci/run), started by a test with PgBouncer's
// defaults but for the pool mode: no ignore_startup_parameters, no prepared statement support
// (Debian 12 ships 1.18, which has none). Trust auth to the test server.

const CANDIDATES = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"];

/** Where the pgbouncer binary is, or undefined when it is not installed. */
export function findPgBouncer(): string | undefined {
  const found = CANDIDATES.find((path) => existsSync(path));
  if (found) return found;
  try {
    return execFileSync("which", ["pgbouncer"], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface PgBouncer {
  port: number;
  /** The URL of `database` through PgBouncer. */
  url: string;
  /** PgBouncer's log so far. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts PgBouncer in front of `target` (a postgres:// URL with host, port, user, database). */
export async function startPgBouncer(
  target: string,
  options: { poolMode?: "transaction" | "session" } = {},
): Promise<PgBouncer> {
  const binary = findPgBouncer();
  if (!binary) throw new Error("pgbouncer is not installed (apt-get install -y pgbouncer)");
  const upstream = new URL(target);
  const database = upstream.pathname.slice(1) || "postgres";
  const user = decodeURIComponent(upstream.username || "postgres");
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "pgwake-pgbouncer-"));
  // PgBouncer refuses to run as root; as root it is started as the postgres user, who must be
  // able to read its files and write its log.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chmodSync(dir, 0o777);
  const logFile = join(dir, "pgbouncer.log");
  writeFileSync(join(dir, "users.txt"), `"${user}" ""\n`);
  writeFileSync(
    join(dir, "pgbouncer.ini"),
    [
      "[databases]",
      `${database} = host=${upstream.hostname} port=${upstream.port || 5432} dbname=${database}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      `logfile = ${logFile}`,
      `pidfile = ${join(dir, "pgbouncer.pid")}`,
      "auth_type = trust",
      `auth_file = ${join(dir, "users.txt")}`,
      `pool_mode = ${options.poolMode ?? "transaction"}`,
      "",
    ].join("\n"),
  );
  writeFileSync(logFile, "");
  if (asRoot)
    for (const f of ["users.txt", "pgbouncer.ini", "pgbouncer.log"]) chmodSync(join(dir, f), 0o666);
  const args = [...(asRoot ? ["-u", "postgres"] : []), join(dir, "pgbouncer.ini")];
  const child: ChildProcess = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const log = () => `${output}${existsSync(logFile) ? readFileSync(logFile, "utf8") : ""}`;
  await waitFor(
    async () => {
      if (gone) throw new Error(`pgbouncer exited:\n${log()}`);
      return canConnect(port);
    },
    { timeoutMs: 10_000, message: "pgbouncer listening" },
  );
  upstream.host = `127.0.0.1:${port}`;
  return {
    port,
    url: upstream.toString(),
    log,
    stop: async () => {
      if (!gone) {
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
