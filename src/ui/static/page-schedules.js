// Schedules in name order with their next run, pause, resume and trigger; a schedule's next times
// and recent runs on demand. Polls the list every 10 s.

import { act, confirmAction } from "./actions.js";
import { api, uiUrl } from "./api.js";
import { badge, byId, count, h, setRows, when } from "./dom.js";
import { poll } from "./poll.js";

export function start() {
  let shown = 100;
  /** @type {string | null} */
  let open = null;

  const list = poll(async () => {
    const schedules = [];
    /** @type {string | null} */
    let after = null;
    let more = false;
    do {
      /** @type {{ schedules: Array<Record<string, any>>, nextCursor: string | null }} */
      const page = await api("schedules", { query: { limit: 100, after } });
      schedules.push(...page.schedules);
      after = page.nextCursor;
      more = after !== null;
    } while (more && schedules.length < shown);
    byId("more").hidden = !more;
    setRows(
      byId("schedules").querySelector("tbody"),
      schedules.map((sc) =>
        row(
          sc,
          () => list.now(),
          (name) => void detail(name),
        ),
      ),
      "No schedule: define one in a task, over HTTP (POST /schedules) or with pgwake schedules.",
    );
    if (open) await detail(open);
  }, 10_000);

  byId("more").addEventListener("click", () => {
    shown += 100;
    void list.now();
  });

  /** @param {string} name */
  async function detail(name) {
    open = name;
    const data = await api(`schedules/${encodeURIComponent(name)}`, {
      query: { upcoming: 5, runs: 10 },
    });
    byId("schedule-detail").hidden = false;
    byId("schedule-detail-title").textContent =
      `${name}: ${data.schedule.cron} (${data.schedule.timeZone})`;
    byId("schedule-upcoming").replaceChildren(
      ...data.upcoming.map((/** @type {string} */ at) => h("li", {}, when(at))),
    );
    byId("schedule-runs").replaceChildren(
      ...(data.runs.length
        ? data.runs.map((/** @type {Record<string, any>} */ run) =>
            h(
              "li",
              {},
              when(run.tickAt ?? run.decidedAt),
              " ",
              badge(run.outcome === "fired" ? "completed" : "cancelled"),
              ` ${run.outcome}${run.skipReason ? ` (${run.skipReason})` : ""} `,
              run.job
                ? h("a", { href: uiUrl(`jobs/${run.job.id}`), text: `job ${run.job.id}` })
                : null,
            ),
          )
        : [h("li", { class: "muted", text: "No run yet." })]),
    );
  }
}

/**
 * @param {Record<string, any>} sc
 * @param {() => void} refresh
 * @param {(name: string) => void} show
 */
function row(sc, refresh, show) {
  const path = `schedules/${encodeURIComponent(sc.name)}`;
  return h(
    "tr",
    { dataset: { schedule: sc.name } },
    h(
      "th",
      { scope: "row" },
      h("button", { type: "button", class: "link", text: sc.name, onclick: () => show(sc.name) }),
    ),
    h(
      "td",
      {},
      h("code", { text: sc.cron }),
      h("span", { class: "muted", text: ` ${sc.timeZone}` }),
    ),
    h("td", { class: "mono", text: sc.task }),
    h("td", { text: sc.queue ?? "(task's)" }),
    h("td", {}, when(sc.nextRunAt)),
    h("td", {}, when(sc.lastTickAt)),
    h("td", { class: "num", text: count(sc.ticksFired) }),
    h(
      "td",
      {},
      badge(sc.invalidReason ? "failed" : sc.paused ? "paused" : "active"),
      sc.invalidReason ? ` ${sc.invalidReason}` : "",
    ),
    h(
      "td",
      { class: "row-actions" },
      h("button", {
        type: "button",
        class: "small ghost",
        text: sc.paused ? "Resume" : "Pause",
        onclick: () =>
          void act(
            () => api(`${path}/${sc.paused ? "resume" : "pause"}`, { method: "POST" }),
            `Schedule ${sc.name} ${sc.paused ? "resumed" : "paused"}`,
          ).then(refresh),
      }),
      h("button", {
        type: "button",
        class: "small",
        text: "Trigger now",
        onclick: async () => {
          const ok = await confirmAction(
            `Run ${sc.name} now?`,
            `Submits one ${sc.task} job now, outside its schedule.`,
            "Trigger",
          );
          if (!ok) return;
          await act(
            () => api(`${path}/trigger`, { method: "POST" }),
            (/** @type {{ job: { id: number } }} */ done) =>
              `Schedule ${sc.name} triggered: job ${done.job.id}`,
          );
          refresh();
        },
      }),
    ),
  );
}
