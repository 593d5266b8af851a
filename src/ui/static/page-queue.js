// One queue: its counts and pause switch (GET /queues, 2 s), its last hour drawn (GET
// /stats/minutes for this queue, 5 s), its limits and busiest keys (flow control, 5 s).

import { act } from "./actions.js";
import { api, uiUrl } from "./api.js";
import { lineChart } from "./charts.js";
import { ago, badge, byId, count, duration, h, setRows } from "./dom.js";
import { meanRun, meanWait, readMinutes } from "./minutes.js";
import { poll } from "./poll.js";

export function start() {
  const name = document.body.dataset.name ?? "";
  const path = `queues/${encodeURIComponent(name)}`;

  const stats = poll(async () => {
    /** @type {{ queues: Array<Record<string, any>> }} */
    const data = await api("queues");
    const q = data.queues.find((one) => one.name === name);
    const state = byId("queue-state");
    state.textContent = q ? (q.paused ? "paused" : "active") : "unknown";
    state.className = `badge ${q?.paused ? "paused" : "active"}`;
    const pause = byId("queue-pause");
    const resume = byId("queue-resume");
    pause.hidden = !q || q.paused;
    resume.hidden = !q?.paused;
    pause.onclick = () =>
      void act(() => api(`${path}/pause`, { method: "POST" }), `Queue ${name} paused`).then(() =>
        stats.now(),
      );
    resume.onclick = () =>
      void act(() => api(`${path}/resume`, { method: "POST" }), `Queue ${name} resumed`).then(() =>
        stats.now(),
      );
    if (!q) {
      byId("queue-counts").replaceChildren(
        h("p", { class: "muted", text: "No job, worker or setting names this queue." }),
      );
      return;
    }
    const capped = new Set(q.capped ?? []);
    byId("queue-counts").replaceChildren(
      ...Object.entries(q.counts).map(([status, n]) =>
        h(
          "div",
          { class: `count ${status}` },
          h("dt", {}, badge(status)),
          h(
            "dd",
            {},
            status === "running" || status === "completed" || n === 0
              ? count(n, capped.has(status))
              : h("a", {
                  href: `${uiUrl("jobs")}?queue=${encodeURIComponent(name)}&status=${status}`,
                  text: count(n, capped.has(status)),
                }),
          ),
        ),
      ),
      h(
        "div",
        { class: "count" },
        h("dt", { text: "oldest wait" }),
        h("dd", { text: duration(q.oldestPendingAgeMs) }),
      ),
    );
    byId("queue-workers").replaceChildren(
      ...(q.workers.length
        ? q.workers.map((/** @type {Record<string, any>} */ w) =>
            h(
              "li",
              {},
              h("code", { text: w.id }),
              ` on ${w.host} (pid ${w.pid}), heartbeat ${ago(w.lastSeenAt)}`,
            ),
          )
        : [h("li", { class: "muted", text: "No live worker serves this queue." })]),
    );
  }, 2_000);

  poll(async () => {
    const { minutes, byQueue } = await readMinutes(60, name);
    const rows = byQueue.get(name) ?? minutes.map(() => null);
    const pick = (/** @type {(m: any) => number | null} */ f) => rows.map((m) => (m ? f(m) : 0));
    lineChart(byId("chart-throughput"), byId("legend-throughput"), {
      minutes,
      series: [
        { name: "completed", values: pick((m) => m.completed), color: 1 },
        { name: "failed", values: pick((m) => m.failed), color: 2 },
        { name: "retried", values: pick((m) => m.retried), color: 4 },
      ],
      format: (v) => count(Math.round(v)),
      minTop: 4,
      empty: "Nothing ended in the last hour",
    });
    lineChart(byId("chart-wait"), byId("legend-wait"), {
      minutes,
      series: [
        { name: "mean wait", values: rows.map((m) => (m ? meanWait(m) : null)) },
        { name: "mean run", values: rows.map((m) => (m ? meanRun(m) : null)) },
      ],
      format: duration,
      minTop: 10,
      empty: "No job ran in the last hour",
    });
  }, 5_000);

  poll(async () => {
    let limits;
    try {
      limits = await api(`${path}/limits`);
    } catch (error) {
      if (/** @type {{ status?: number }} */ (error).status !== 404) throw error;
      limits = null;
    }
    const fact = (/** @type {string} */ label, /** @type {unknown} */ value) =>
      value === null || value === undefined
        ? []
        : [h("dt", { text: label }), h("dd", { text: String(value) })];
    const f = limits?.flow;
    byId("queue-limits").replaceChildren(
      ...(limits?.limited && f
        ? [
            ...fact("Concurrency", f.concurrency),
            ...fact("Per key", f.keyConcurrency),
            ...fact(
              "Rate",
              f.rateLimit !== null ? `${f.rateLimit} per ${duration(f.ratePeriodMs)}` : null,
            ),
            ...fact(
              "Rate per key",
              f.keyRateLimit !== null
                ? `${f.keyRateLimit} per ${duration(f.keyRatePeriodMs)}`
                : null,
            ),
            ...fact("Fair between keys", f.fair ? "yes" : null),
            ...fact("Running under the limits", f.running),
            ...fact("Tokens", f.tokens !== null ? f.tokens.toFixed(1) : null),
            ...fact("Held back now", f.throttled),
            ...fact("Set by", f.source),
          ]
        : [
            h("dt", { text: "Limits" }),
            h("dd", { text: "none: its jobs start as fast as workers take them" }),
          ]),
    );
    /** @type {{ keys: Array<Record<string, any>> }} */
    const keys = limits?.limited
      ? await api(`${path}/keys`, { query: { limit: 20 } })
      : { keys: [] };
    setRows(
      byId("queue-keys").querySelector("tbody"),
      keys.keys.map((k) =>
        h(
          "tr",
          {},
          h("td", { class: "mono", text: k.key === "" ? "(no key)" : k.key }),
          h("td", { class: "num", text: String(k.running ?? 0) }),
          h("td", {
            class: "num",
            text: k.tokens === null || k.tokens === undefined ? "–" : Number(k.tokens).toFixed(1),
          }),
        ),
      ),
      "No key: the queue is not served per key.",
    );
  }, 5_000);
}
