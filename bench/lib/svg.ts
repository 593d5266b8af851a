import type { Result } from "./context.ts";
import { formatNumber } from "./format.ts";
import type { MachineInfo } from "./machine.ts";
import { SYSTEM_LABEL, type SystemName } from "./systems.ts";

const COLORS: Record<SystemName, string> = {
  pgwake: "#2563eb",
  graphile: "#16a34a",
  pgboss: "#d97706",
};

const TITLES: Record<string, string> = {
  "drain-1p": "drain, 1 process",
  "drain-2p": "drain, 2 processes",
  "enqueue-single": "single enqueue, 16 in flight",
  "enqueue-sql": "SQL enqueue function, 16 connections",
  "latency-p50": "wake latency p50 (lower is better)",
  "latency-p99": "wake latency p99 (lower is better)",
};

/** A panel's title: known keys by name, bulk shapes by their call size. */
function title(key: string): string {
  const bulk = /^enqueue-bulk-(\d+)$/.exec(key);
  if (bulk) return `bulk enqueue, calls of ${Number(bulk[1]).toLocaleString("en-US")}`;
  return TITLES[key] ?? key;
}

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/**
 * A hand-written SVG: one panel per compared workload, one horizontal bar per system (median),
 * with a thin line for the min–max range of the repetitions.
 */
export function renderSvg(
  results: readonly Result[],
  info: { mode: string; machine: MachineInfo; startedAt: Date },
): string {
  const peers = results.filter(
    (r) => r.scenario === "peers" && r.compareKey && !r.compareKey.startsWith("latency-p95"),
  );
  const keys = [...new Set(peers.map((r) => r.compareKey!))].filter(
    (k) => k.startsWith("drain") || k.startsWith("enqueue") || k in TITLES,
  );
  const panels = keys.map((key) => {
    const rows = peers.filter((r) => r.compareKey === key);
    return { key, title: title(key), unit: rows[0]!.unit, rows };
  });
  const width = 760;
  const left = 230;
  const barArea = width - left - 110;
  const barHeight = 18;
  const panelGap = 26;
  let y = 58;
  const parts: string[] = [];
  for (const panel of panels) {
    parts.push(
      `<text x="16" y="${y}" font-size="13" font-weight="bold">${escapeXml(panel.title)} (${panel.unit})</text>`,
    );
    y += 8;
    const scale = Math.max(...panel.rows.map((r) => r.summary.max)) || 1;
    for (const row of panel.rows) {
      const w = Math.max(1, (row.summary.median / scale) * barArea);
      const x0 = left + (row.summary.min / scale) * barArea;
      const x1 = left + (row.summary.max / scale) * barArea;
      const cy = y + barHeight / 2;
      parts.push(
        `<text x="${left - 8}" y="${cy + 4}" font-size="12" text-anchor="end">${escapeXml(row.variant ? `${SYSTEM_LABEL[row.system]} (${row.variant})` : SYSTEM_LABEL[row.system])}</text>`,
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${COLORS[row.system]}" rx="2"/>`,
        `<line x1="${x0.toFixed(1)}" x2="${x1.toFixed(1)}" y1="${cy}" y2="${cy}" stroke="#111" stroke-width="1.5"/>`,
        `<text x="${(left + Math.max(w, x1 - left) + 6).toFixed(1)}" y="${cy + 4}" font-size="12">${formatNumber(row.summary.median)}</text>`,
      );
      y += barHeight + 4;
    }
    y += panelGap;
  }
  if (panels.length === 0) {
    parts.push(
      `<text x="16" y="${y}" font-size="13">no peer comparison in this run (run the "peers" scenario)</text>`,
    );
    y += 30;
  }
  const m = info.machine;
  const subtitle = `${info.mode} run ${info.startedAt.toISOString().slice(0, 16)}Z · ${m.cores} cores · ${m.memoryGiB} GiB · Node ${m.node} · ${m.database.version.split(" on ")[0]} · commit ${m.gitCommit?.slice(0, 10) ?? "?"} · bars: median, line: min–max`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="system-ui, sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="bold">pgwake vs graphile-worker vs pg-boss</text>`,
    `<text x="16" y="42" font-size="11" fill="#555">${escapeXml(subtitle)}</text>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}
