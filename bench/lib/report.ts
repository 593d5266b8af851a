import type { Result, Verdict } from "./context.ts";
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
    r.variant ? `${SYSTEM_LABEL[r.system]} (${r.variant})` : SYSTEM_LABEL[r.system],
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

/**
 * For every compareKey, each pgwake row's median against each peer's row of the same scenario,
 * key and metric, oriented so > 1 favours pgwake.
 */
export function ratios(results: readonly Result[]): {
  key: string;
  variant: string | undefined;
  metric: string;
  peer: string;
  ratio: number;
  pgwake: number;
  other: number;
  unit: string;
}[] {
  const out: ReturnType<typeof ratios> = [];
  const keyed = results.filter((r) => r.compareKey);
  for (const mine of keyed.filter((r) => r.system === "pgwake")) {
    for (const other of keyed.filter(
      (r) =>
        r.system !== "pgwake" &&
        r.scenario === mine.scenario &&
        r.compareKey === mine.compareKey &&
        r.metric === mine.metric,
    )) {
      const ratio =
        mine.better === "higher"
          ? mine.summary.median / other.summary.median
          : other.summary.median / mine.summary.median;
      out.push({
        key: mine.compareKey!,
        variant: mine.variant,
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
      `  ${r.key} ${r.metric}: pgwake${r.variant ? ` (${r.variant})` : ""} ${formatNumber(r.pgwake)} vs ${r.peer} ${formatNumber(r.other)} ${r.unit} → ${r.ratio.toFixed(2)}×`,
  );
}

/** The targets section: each target, what this run measured, and whether it is met. */
export function renderVerdicts(verdicts: readonly Verdict[]): string {
  if (verdicts.length === 0) return "";
  const mark = (met: boolean | null) => (met === null ? "n/a " : met ? "MET " : "MISS");
  return [
    "targets (issues 11 and 16; indicative on a shared machine)",
    ...verdicts.map((v) => `  ${mark(v.met)} ${v.issue} ${v.target}: ${v.measured}`),
  ].join("\n");
}

/** `a / b` as "1.23×". */
export function times(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : "–";
}
