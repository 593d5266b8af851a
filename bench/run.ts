/**
 * pgwake's benchmark suite: `node bench/run.ts [--quick | --full] [--reps N] [scenario …]`.
 *
 * Runs every scenario (or the ones named) against DATABASE_URL, or an embedded Postgres when
 * unset; prints a table on stdout, progress on stderr, and writes a JSON file and an SVG chart
 * under bench/results/. See bench/README.md.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BenchContext, type Mode, SETTINGS } from "./lib/context.ts";
import { machineInfo } from "./lib/machine.ts";
import { Progress } from "./lib/progress.ts";
import { renderTable, renderVerdicts } from "./lib/report.ts";
import { renderSvg } from "./lib/svg.ts";
import { adminPool } from "./lib/systems.ts";
import { bulkScenario } from "./scenarios/bulk.ts";
import { drainScenario } from "./scenarios/drain.ts";
import { enqueueScenario } from "./scenarios/enqueue.ts";
import { fleetScenario } from "./scenarios/fleet.ts";
import { historyScenario } from "./scenarios/history.ts";
import { httpScenario } from "./scenarios/http.ts";
import { latencyScenario } from "./scenarios/latency.ts";
import { peersScenario } from "./scenarios/peers.ts";
import { scaleScenario } from "./scenarios/scale.ts";
import { schedulesScenario } from "./scenarios/schedules.ts";
import { wakeupScenario } from "./scenarios/wakeup.ts";
import { walScenario } from "./scenarios/wal.ts";
import { xminScenario } from "./scenarios/xmin.ts";

const SCENARIOS: Record<string, (ctx: BenchContext) => Promise<void>> = {
  drain: drainScenario,
  enqueue: enqueueScenario,
  latency: latencyScenario,
  wakeup: wakeupScenario,
  peers: peersScenario,
  http: httpScenario,
  wal: walScenario,
  xmin: xminScenario,
  history: historyScenario,
  scale: scaleScenario,
  fleet: fleetScenario,
  bulk: bulkScenario,
  schedules: schedulesScenario,
};

const USAGE = `usage: node bench/run.ts [--quick | --full] [--reps N] [scenario …]
scenarios: ${Object.keys(SCENARIOS).join(", ")} (default: all)
database:  DATABASE_URL, or an embedded Postgres when unset`;

interface Args {
  mode: Mode;
  reps: number | undefined;
  scenarios: string[];
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { mode: "default", reps: undefined, scenarios: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--quick") args.mode = "quick";
    else if (arg === "--full") args.mode = "full";
    else if (arg === "--reps") args.reps = Number(argv[++i]);
    else if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else if (arg in SCENARIOS) args.scenarios.push(arg);
    else {
      console.error(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
      process.exit(2);
    }
  }
  if (args.reps !== undefined && !(Number.isInteger(args.reps) && args.reps >= 3)) {
    console.error("--reps must be an integer of at least 3");
    process.exit(2);
  }
  if (args.scenarios.length === 0) args.scenarios = Object.keys(SCENARIOS);
  return args;
}

async function findDatabase(): Promise<{ url: string; source: string; stop: () => Promise<void> }> {
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) return { url: fromEnv, source: "DATABASE_URL", stop: async () => {} };
  const { findTestPostgres } = await import("../test/helpers/postgres.ts");
  const found = await findTestPostgres();
  return { url: found.url, source: found.source, stop: found.stop };
}

async function statStatementsReadable(ctx: Pick<BenchContext, "admin">): Promise<string | true> {
  try {
    await ctx.admin.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    await ctx.admin.query("SELECT 1 FROM pg_stat_statements LIMIT 1");
    return true;
  } catch (error) {
    return (error as Error).message;
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const settings = structuredClone(SETTINGS[args.mode]);
  if (args.reps) settings.reps = args.reps;
  const database = await findDatabase();
  const admin = adminPool(database.url);
  const progress = new Progress(args.scenarios.length);
  const startedAt = new Date();
  const ctx: BenchContext = {
    url: database.url,
    mode: args.mode,
    settings,
    admin,
    progress,
    results: [],
    notes: [],
    statStatements: false,
    verdicts: [],
  };
  const statStatements = await statStatementsReadable(ctx);
  ctx.statStatements = statStatements === true;
  if (statStatements !== true) {
    ctx.notes.push({
      scenario: "setup",
      text: `pg_stat_statements not readable (${statStatements}); claim statements are counted by the workers.`,
    });
  }
  const machine = await machineInfo(admin, database.source);
  const failures: string[] = [];
  // Other processes share this machine's cores: each scenario's load average says how much.
  const load: Record<string, number[]> = {};
  const loadNow = () => loadavg().map((l) => Math.round(l * 100) / 100);
  try {
    for (const name of args.scenarios) {
      progress.scenario(name);
      load[name] = loadNow();
      try {
        // Start every scenario from a clean slate: without this, the pages the previous
        // scenario dirtied are written by a checkpoint during this one's measurement.
        await admin.query("CHECKPOINT").catch((error: Error) =>
          ctx.notes.push({
            scenario: name,
            text: `CHECKPOINT before it failed: ${error.message}`,
          }),
        );
        await SCENARIOS[name]!(ctx);
      } catch (error) {
        const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
        failures.push(`${name}: ${text}`);
        ctx.notes.push({ scenario: name, text: `FAILED: ${text}` });
        progress.note(`scenario ${name} failed: ${text}`);
      }
    }
  } finally {
    await admin.end();
    await database.stop();
  }
  progress.done();

  const finishedAt = new Date();
  console.log(renderTable(ctx.results, { mode: args.mode, reps: settings.reps, machine }));
  console.log(
    `\nload average (1/5/15 min) at each scenario's start: ${Object.entries(load)
      .map(([name, l]) => `${name} ${l.join("/")}`)
      .join("; ")}; at the end ${loadNow().join("/")}`,
  );
  for (const note of ctx.notes) console.log(`\n[${note.scenario}] ${note.text}`);
  const verdicts = renderVerdicts(ctx.verdicts);
  if (verdicts) console.log(`\n${verdicts}`);

  const here = dirname(fileURLToPath(import.meta.url));
  const dir = join(here, "results");
  mkdirSync(dir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const base = join(dir, `${stamp}-${args.mode}`);
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1_000,
    mode: args.mode,
    scenarios: args.scenarios,
    settings,
    machine,
    loadAverage: { byScenario: load, atEnd: loadNow() },
    results: ctx.results,
    notes: ctx.notes,
    verdicts: ctx.verdicts,
  };
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(`${base}.svg`, renderSvg(ctx.results, { mode: args.mode, machine, startedAt }));
  console.log(`\nwrote ${base}.json and ${base}.svg`);
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
