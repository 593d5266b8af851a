// The overview: every queue with its counts, the last hour drawn, and the fleet. Polls GET
// /queues (2 s), GET /workers (5 s) and GET /stats/minutes (5 s): none of them reads history.

import { act } from "./actions.js";
import { api, uiUrl } from "./api.js";
import { lineChart, sparkline, topSeries } from "./charts.js";
import { ago, badge, byId, count, duration, h, setRows, when } from "./dom.js";
import { meanWait, readMinutes } from "./minutes.js";
import { poll } from "./poll.js";

/**
 * @typedef {{ name: string, paused: boolean, counts: Record<string, number>, capped?: string[], oldestPendingAgeMs: number | null, workers: unknown[] }} Queue
 */

const HOUR = 60;

export function start() {
  /** @type {Map<string, (number | null)[]>} */
  let throughput = new Map();

  const queues = poll(async () => {
    /** @type {{ queues: Queue[] }} */
    const data = await api("queues");
    setRows(
      byId("queues").querySelector("tbody"),
      data.queues.map((q) => queueRow(q, throughput.get(q.name) ?? [], () => queues.now())),
      "No queue yet: submit a job and it appears here.",
    );
  }, 2_000);

  poll(async () => {
    /** @type {{ workers: Array<{ id: string, host: string, pid: number, queues: string[], concurrency: number, running: number, listening: boolean, startedAt: string, lastSeenAt: string }> }} */
    const data = await api("workers");
    setRows(
      byId("workers").querySelector("tbody"),
      data.workers.map((w) =>
        h(
          "tr",
          {},
          h("td", { class: "mono", text: w.id }),
          h("td", { text: w.host }),
          h("td", { class: "num", text: String(w.pid) }),
          h(
            "td",
            {},
            w.queues.map((q) =>
              q === "*" ? "every queue " : h("span", { class: "chip", text: q }),
            ),
          ),
          h("td", { class: "num", text: `${w.running} / ${w.concurrency}` }),
          h("td", { text: w.listening ? "yes" : "no (polls)" }),
          h("td", {}, when(w.startedAt)),
          h("td", {}, when(w.lastSeenAt, ago)),
        ),
      ),
      "No worker is alive: jobs wait until one starts.",
    );
  }, 5_000);

  poll(async () => {
    const { minutes, byQueue } = await readMinutes(HOUR);
    throughput = new Map([...byQueue].map(([name, rows]) => [name, rows.map((m) => m.completed)]));
    const names = [...byQueue.keys()];
    lineChart(byId("chart-throughput"), byId("legend-throughput"), {
      minutes,
      series: topSeries(names.map((name) => ({ name, values: throughput.get(name) ?? [] }))),
      format: (v) => count(Math.round(v)),
      minTop: 4,
      empty: "Nothing completed in the last hour",
    });
    lineChart(byId("chart-wait"), byId("legend-wait"), {
      minutes,
      series: topSeries(
        names.map((name) => ({ name, values: (byQueue.get(name) ?? []).map(meanWait) })),
      ),
      format: duration,
      minTop: 10,
      empty: "No job started in the last hour",
    });
    void queues.now();
  }, 5_000);
}

/**
 * @param {Queue} q
 * @param {(number | null)[]} lastHour
 * @param {() => void} refresh
 */
function queueRow(q, lastHour, refresh) {
  const capped = new Set(q.capped ?? []);
  const cell = (/** @type {string} */ status) => {
    const n = q.counts[status] ?? 0;
    const text = count(n, capped.has(status));
    const linked = status !== "running" && status !== "completed" && n > 0;
    return h(
      "td",
      { class: `num ${n > 0 ? status : "zero"}` },
      linked
        ? h("a", {
            href: `${uiUrl("jobs")}?queue=${encodeURIComponent(q.name)}&status=${status}`,
            text,
            title: `${status} jobs of ${q.name}`,
          })
        : text,
    );
  };
  const total = lastHour.reduce((a, v) => a + (v ?? 0), 0);
  return h(
    "tr",
    { dataset: { queue: q.name } },
    h(
      "th",
      { scope: "row" },
      h("a", { href: uiUrl(`queues/${encodeURIComponent(q.name)}`), text: q.name }),
      q.paused ? [" ", badge("paused")] : null,
    ),
    ["pending", "scheduled", "running", "retrying", "failed", "cancelled", "completed"].map(cell),
    h("td", {
      class: "num",
      text: q.oldestPendingAgeMs === null ? "–" : duration(q.oldestPendingAgeMs),
    }),
    h(
      "td",
      { class: "spark-cell" },
      sparkline(lastHour.length ? lastHour : [0, 0], `${count(total)} completed in the last hour`),
    ),
    h("td", { class: "num", text: String(q.workers.length) }),
    h(
      "td",
      {},
      h("button", {
        type: "button",
        class: "small ghost",
        dataset: { action: q.paused ? "resume" : "pause" },
        text: q.paused ? "Resume" : "Pause",
        onclick: () =>
          act(
            () =>
              api(`queues/${encodeURIComponent(q.name)}/${q.paused ? "resume" : "pause"}`, {
                method: "POST",
              }),
            q.paused
              ? `Queue ${q.name} resumed`
              : `Queue ${q.name} paused: workers claim none of its jobs`,
          ).then(refresh),
      }),
    ),
  );
}
