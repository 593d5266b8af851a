import type { Result } from "./context.ts";
import { formatNumber } from "./format.ts";
import type { MachineInfo } from "./machine.ts";
import { SYSTEM_LABEL } from "./systems.ts";

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

/** The stdout table: one line per figure, median with min–max, and pgwake/peer ratios. */
export function renderTable(
  results: readonly Result[],
  info: { mode: string; reps: number; machine: MachineInfo },
): string {
  const { machine } = info;
  const header = [
    `pgwake bench (${info.mode}, ${info.reps} repetitions after a warm-up; median [min–max])`,
    `${machine.cores} cores ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.database.version.split(" on ")[0]}, commit ${machine.gitCommit?.slice(0, 12) ?? "?"}${machine.gitDirty ? " (dirty)" : ""}`,
  ];
  const rows = results.map((r) => [
    r.scenario,
    SYSTEM_LABEL[r.system],
    r.case,
    r.metric,
    formatNumber(r.summary.median),
    `[${formatNumber(r.summary.min)}–${formatNumber(r.summary.max)}]`,
    r.unit,
  ]);
  const titles = ["scenario", "system", "case", "metric", "median", "[min–max]", "unit"];
  const widths = titles.map((t, i) => Math.max(t.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => pad(c, widths[i]!, i === 4 || i === 5)).join("  ");
  const out = [...header, "", line(titles), widths.map((w) => "-".repeat(w)).join("  ")];
  let last = "";
  for (const row of rows) {
    if (last && row[0] !== last) out.push("");
    last = row[0]!;
    out.push(line(row));
  }
  const ratios = ratioLines(results);
  if (ratios.length > 0)
    out.push("", "pgwake / peer (medians; > 1 means pgwake is better)", ...ratios);
  return out.join("\n");
}

/** For every compareKey, pgwake's median against each peer's, oriented so > 1 favours pgwake. */
export function ratios(results: readonly Result[]): {
  key: string;
  metric: string;
  peer: string;
  ratio: number;
  pgwake: number;
  other: number;
  unit: string;
}[] {
  const out: ReturnType<typeof ratios> = [];
  const keyed = results.filter((r) => r.compareKey);
  for (const mine of keyed.filter((r) => r.system === "pgwake" && r.scenario === "peers")) {
    for (const other of keyed.filter(
      (r) => r.system !== "pgwake" && r.compareKey === mine.compareKey && r.metric === mine.metric,
    )) {
      const ratio =
        mine.better === "higher"
          ? mine.summary.median / other.summary.median
          : other.summary.median / mine.summary.median;
      out.push({
        key: mine.compareKey!,
        metric: mine.metric,
        peer: SYSTEM_LABEL[other.system],
        ratio,
        pgwake: mine.summary.median,
        other: other.summary.median,
        unit: mine.unit,
      });
    }
  }
  return out;
}

function ratioLines(results: readonly Result[]): string[] {
  return ratios(results).map(
    (r) =>
      `  ${r.key} ${r.metric}: pgwake ${formatNumber(r.pgwake)} vs ${r.peer} ${formatNumber(r.other)} ${r.unit} → ${r.ratio.toFixed(2)}×`,
  );
}
