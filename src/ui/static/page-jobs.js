// Jobs, newest first, filtered by queue, task, status and creation time, paged with the API's
// cursors; the first page stays live. Bulk actions act on every job the filter matches (not
// only the page shown), after a dry run tells how many and the user confirms.

import { act, announce, confirmAction } from "./actions.js";
import { api, uiUrl } from "./api.js";
import { badge, byId, count, h, setRows, when } from "./dom.js";
import { poll } from "./poll.js";

const PAGE = 50;
const SINCE = { "15m": 900_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000 };
/** Which statuses each bulk action takes, and the ones it takes when the filter names none. */
const BULK = {
  retry: { takes: ["failed", "cancelled"], defaults: ["failed"], verb: "Retry", done: "retried" },
  cancel: {
    takes: ["scheduled", "pending", "running", "retrying"],
    defaults: ["scheduled", "pending", "running", "retrying"],
    verb: "Cancel",
    done: "cancelled",
  },
  delete: {
    takes: ["completed", "failed", "cancelled"],
    defaults: ["completed", "failed", "cancelled"],
    verb: "Delete",
    done: "deleted",
  },
};

/** The filter in the address (`?queue=…&status=failed&status=cancelled&since=1h`). */
function readFilter() {
  const params = new URLSearchParams(window.location.search);
  const since = params.get("since") ?? "";
  return {
    queue: params.get("queue") ?? "",
    task: params.get("task") ?? "",
    statuses: params
      .getAll("status")
      .flatMap((s) => s.split(","))
      .filter(Boolean),
    since: Object.hasOwn(SINCE, since) ? since : "",
  };
}

export function start() {
  const filter = readFilter();
  const form = /** @type {HTMLFormElement} */ (byId("filters"));
  /** @type {HTMLInputElement} */ (byId("f-queue")).value = filter.queue;
  /** @type {HTMLInputElement} */ (byId("f-task")).value = filter.task;
  /** @type {HTMLSelectElement} */ (byId("f-since")).value = filter.since;
  for (const box of form.querySelectorAll('input[name="status"]')) {
    /** @type {HTMLInputElement} */ (box).checked = filter.statuses.includes(
      /** @type {HTMLInputElement} */ (box).value,
    );
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    // Only the fields set go in the address.
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(form))
      if (value !== "") query.append(name, String(value));
    window.location.assign(`${uiUrl("jobs")}${query.size ? `?${query}` : ""}`);
  });
  byId("goto").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = /** @type {HTMLInputElement} */ (byId("goto-id")).value.trim();
    if (/^\d{1,16}$/.test(id)) window.location.assign(uiUrl(`jobs/${id}`));
  });
  void api("queues").then(
    (/** @type {{ queues: Array<{ name: string }> }} */ data) =>
      byId("queue-names").replaceChildren(
        ...data.queues.map((q) => h("option", { value: q.name })),
      ),
    () => {},
  );

  /** Cursors of the pages seen: the first page has none. */
  const cursors = [/** @type {number | null} */ (null)];
  let page = 0;
  /** @type {number | null} */
  let next = null;
  const cutoff = filter.since ? () => Date.now() - SINCE[filter.since] : () => 0;

  const list = poll(async () => {
    /** @type {{ jobs: Array<Record<string, any>>, nextCursor: number | null }} */
    const from = cutoff();
    const data = await api("jobs", {
      query: {
        queue: filter.queue,
        task: filter.task,
        status: filter.statuses.join(","),
        limit: PAGE,
        cursor: cursors[page],
        // the time range is applied by the server (createdAfter)
        createdAfter: from > 0 ? new Date(from).toISOString() : undefined,
      },
    });
    const shown = data.jobs;
    next = data.nextCursor;
    setRows(
      byId("jobs").querySelector("tbody"),
      shown.map((job) =>
        h(
          "tr",
          { dataset: { id: String(job.id), status: job.status } },
          h(
            "td",
            { class: "num" },
            h("a", { href: uiUrl(`jobs/${job.id}`), text: String(job.id) }),
          ),
          h(
            "td",
            {},
            h("a", { href: uiUrl(`queues/${encodeURIComponent(job.queue)}`), text: job.queue }),
          ),
          h("td", { class: "mono", text: job.task }),
          h("td", {}, badge(job.status)),
          h("td", { class: "num", text: `${job.attempts} / ${job.maxAttempts}` }),
          h("td", {}, when(job.createdAt)),
          h("td", {}, when(job.finishedAt)),
        ),
      ),
      page === 0 ? "No job matches this filter." : "No older job matches.",
    );
    /** @type {HTMLButtonElement} */ (byId("older")).disabled = next === null;
    /** @type {HTMLButtonElement} */ (byId("newer")).disabled = page === 0;
    // Older pages hold still; the first follows new jobs.
    list.every(page === 0 ? 3_000 : 3_600_000);
  }, 3_000);

  byId("older").addEventListener("click", () => {
    if (next === null) return;
    cursors[++page] = next;
    void list.now();
  });
  byId("newer").addEventListener("click", () => {
    if (page === 0) return;
    page--;
    void list.now();
  });

  const scope = describe(filter);
  byId("bulk-scope").textContent =
    `On every job of ${scope} that the filter matches, not only this page:`;
  for (const button of byId("bulk").querySelectorAll("button[data-bulk]")) {
    const action = /** @type {keyof typeof BULK} */ (
      /** @type {HTMLElement} */ (button).dataset.bulk
    );
    const spec = BULK[action];
    const named = filter.statuses.filter((s) => spec.takes.includes(s));
    // A filter naming statuses this action cannot take leaves it nothing to do.
    const statuses = filter.statuses.length === 0 ? spec.defaults : named;
    /** @type {HTMLButtonElement} */ (button).disabled = statuses.length === 0;
    button.addEventListener(
      "click",
      () => void bulk(action, { ...filter, statuses }, scope).then(() => list.now()),
    );
  }
}

/**
 * The filter in words, for the confirmation.
 * @param {ReturnType<typeof readFilter>} filter
 */
function describe(filter) {
  const parts = [];
  if (filter.queue) parts.push(`queue ${filter.queue}`);
  else parts.push("every queue");
  if (filter.task) parts.push(`task ${filter.task}`);
  if (filter.since) parts.push(`created in the last ${filter.since}`);
  return parts.join(", ");
}

/**
 * A dry run for the count, the user's confirmation, then the action.
 * @param {keyof typeof BULK} action
 * @param {{ queue: string, task: string, statuses: string[], since: string }} filter
 * @param {string} scope
 */
async function bulk(action, filter, scope) {
  const spec = BULK[action];
  // The time the user looked: jobs that finish after it (a retried job failing again) are not
  // taken by this request or by a repeat of it.
  const looked = new Date().toISOString();
  /** @type {Record<string, unknown>} */
  const body = { status: filter.statuses };
  if (filter.queue) body.queue = filter.queue;
  if (filter.task) body.task = filter.task;
  if (filter.since) body.createdAfter = new Date(Date.now() - SINCE[filter.since]).toISOString();
  if (action !== "cancel") body.finishedBefore = looked;
  const path = `jobs/bulk/${action === "delete" ? "purge" : action}`;
  let preview;
  try {
    preview = await api(path, { method: "POST", body: { ...body, dryRun: true } });
  } catch (error) {
    announce(`Refused: ${/** @type {Error} */ (error).message}`, "error");
    return;
  }
  const what = `${filter.statuses.join(" or ")} jobs`;
  if (preview.affected === 0) {
    announce(`No ${what} match (${scope}).`);
    return;
  }
  const n = count(preview.affected, preview.capped);
  const ok = await confirmAction(
    `${spec.verb} ${n} ${what}?`,
    `${spec.verb} every ${what.replace(/s$/, "")} of ${scope}: ${n} now.${
      action === "delete" ? " Deleted jobs and their timelines are gone for good." : ""
    }${action === "cancel" ? " Running ones are stopped by their abort signal." : ""}`,
    `${spec.verb} ${n}`,
    action !== "retry",
  );
  if (!ok) return;
  await act(
    () => api(path, { method: "POST", body }),
    (/** @type {{ affected: number, skipped: number }} */ done) =>
      `${count(done.affected)} jobs ${spec.done}${
        done.skipped
          ? `; ${count(done.skipped)} left failed: a live job holds their idempotency key`
          : ""
      }.`,
  );
}
