import { execFileSync } from "node:child_process";
import { cpus, loadavg, type as osType, release, totalmem } from "node:os";
import type pg from "pg";

/** Where a run happened: enough to tell whether two result files are comparable. */
export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  loadAverageAtStart: number[];
  node: string;
  gitCommit: string | null;
  gitDirty: boolean | null;
  database: { source: string; version: string; settings: Record<string, string> };
  packages: Record<string, string>;
}

const SETTINGS = [
  "shared_buffers",
  "work_mem",
  "max_connections",
  "synchronous_commit",
  "fsync",
  "wal_level",
  "max_wal_size",
  "checkpoint_timeout",
  "effective_io_concurrency",
  "random_page_cost",
  "jit",
  "autovacuum",
  "shared_preload_libraries",
];

function git(args: string[]): string | null {
  try {
    return execFileSync("git", args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return null;
  }
}

async function packageVersion(name: string): Promise<string> {
  try {
    const { createRequire } = await import("node:module");
    const require = createRequire(import.meta.url);
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

export async function machineInfo(admin: pg.Pool, source: string): Promise<MachineInfo> {
  const { rows: version } = await admin.query<{ v: string }>("SELECT version() AS v");
  const { rows: settings } = await admin.query<{
    name: string;
    setting: string;
    unit: string | null;
  }>("SELECT name, setting, unit FROM pg_settings WHERE name = ANY ($1)", [SETTINGS]);
  const status = git(["status", "--porcelain"]);
  return {
    cpuModel: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${osType()} ${release()}`,
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    node: process.version,
    gitCommit: git(["rev-parse", "HEAD"]),
    gitDirty: status === null ? null : status.length > 0,
    database: {
      source,
      version: version[0]!.v,
      settings: Object.fromEntries(
        settings.map((s) => [s.name, s.unit ? `${s.setting} (${s.unit})` : s.setting]),
      ),
    },
    packages: {
      "graphile-worker": await packageVersion("graphile-worker"),
      "pg-boss": await packageVersion("pg-boss"),
      pg: await packageVersion("pg"),
    },
  };
}
