// One job: its facts, last error with stack, payload and result, every attempt, and the timeline
// of its events and log lines as it grows. Polls the job by id and its events after the last
// cursor (a page of new events, never the whole timeline again): every second while it lives,
// every five once it has finished (a retry from elsewhere brings it back).

import { act, confirmAction } from "./actions.js";
import { api, uiUrl } from "./api.js";
import { badge, byId, duration, h, json, setRows, when } from "./dom.js";
import { poll } from "./poll.js";

const FINISHED = new Set(["completed", "failed", "cancelled"]);
const ENDS = {
  completed: "completed",
  attempt_failed: "failed",
  lease_expired: "lease expired",
  returned: "handed back",
  cancelled: "cancelled",
  outcome_ignored: null,
};

/**
 * @typedef {{ id: number | null, kind: string, attempt: number | null, workerId: string | null, message: string | null, data: any, at: string }} JobEvent
 */

export function start() {
  const id = document.body.dataset.id ?? "";
  if (!/^\d{1,16}$/.test(id)) {
    byId("job-facts").replaceChildren(h("p", { class: "error", text: `"${id}" is not a job id.` }));
    return;
  }
  /** Pages of the timeline: the cursor each was read from, and its events. */
  /** @type {Array<{ from: number | null, events: JobEvent[] }>} */
  const pages = [];
  let status = "";

  const readTimeline = async () => {
    // Read again from the start of the last page (it may have grown), then on while more follow.
    let from = pages.pop()?.from ?? null;
    for (;;) {
      /** @type {{ events: JobEvent[], nextCursor: number | null }} */
      const data = await api(`jobs/${id}/events`, { query: { cursor: from, limit: 500 } });
      pages.push({ from, events: data.events });
      if (data.nextCursor === null) break;
      from = data.nextCursor;
    }
    const events = pages.flatMap((p) => p.events);
    renderTimeline(events);
    renderAttempts(events);
  };

  const job = poll(async () => {
    let data;
    try {
      data = await api(`jobs/${id}`);
    } catch (error) {
      if (/** @type {{ status?: number }} */ (error).status === 404) {
        byId("job-facts").replaceChildren(
          h("p", { class: "error", text: `There is no job ${id}.` }),
        );
        job.stop();
        return;
      }
      throw error;
    }
    renderJob(data, () => job.now());
    await readTimeline();
    if (data.status !== status) {
      status = data.status;
      job.every(FINISHED.has(status) ? 5_000 : 1_000);
    }
  }, 1_000);
}

/**
 * @param {Record<string, any>} job
 * @param {() => void} refresh
 */
function renderJob(job, refresh) {
  const status = byId("job-status");
  status.textContent = job.status;
  status.className = `badge ${job.status}`;
  document.title = `Job ${job.id} (${job.status}) · pgwake`;
  const fact = (/** @type {string} */ name, /** @type {unknown} */ value) => [
    h("dt", { text: name }),
    h("dd", {}, value ?? h("span", { class: "muted", text: "–" })),
  ];
  const waiting = job.waitingFor
    ? `${job.waitingFor.reason}${job.waitingFor.key ? ` (key ${job.waitingFor.key})` : ""}`
    : null;
  byId("job-facts").replaceChildren(
    ...fact(
      "Queue",
      h("a", { href: uiUrl(`queues/${encodeURIComponent(job.queue)}`), text: job.queue }),
    ),
    ...fact("Task", h("code", { text: job.task })),
    ...fact("Attempts", `${job.attempts} of ${job.maxAttempts}`),
    ...fact("Priority", String(job.priority)),
    ...fact("Created", when(job.createdAt)),
    ...fact("Run at", when(job.runAt)),
    ...fact("Started", when(job.startedAt)),
    ...fact("Finished", when(job.finishedAt)),
    ...(job.startedAt && job.finishedAt
      ? fact("Ran for", duration(Date.parse(job.finishedAt) - Date.parse(job.startedAt)))
      : []),
    ...(waiting ? fact("Waiting for", waiting) : []),
    ...fact("Worker", job.leaseOwner ? h("code", { text: job.leaseOwner }) : null),
    ...fact("Idempotency key", job.idempotencyKey ? h("code", { text: job.idempotencyKey }) : null),
    ...fact(
      "Concurrency key",
      job.concurrencyKey !== null ? h("code", { text: job.concurrencyKey }) : null,
    ),
    ...fact("Request id", job.requestId ? h("code", { text: job.requestId }) : null),
  );
  const error = byId("job-error");
  error.hidden = !job.lastError;
  if (job.lastError) {
    byId("job-error-message").textContent =
      `${job.lastError.name ?? "Error"}${job.lastError.code ? ` [${job.lastError.code}]` : ""}: ${job.lastError.message}`;
    byId("job-error-stack").textContent = job.lastError.stack ?? "(no stack)";
  }
  byId("job-payload").textContent = json(job.payload);
  byId("job-result").textContent = job.result === null ? "–" : json(job.result);

  const retry = byId("job-retry");
  const cancel = byId("job-cancel");
  retry.hidden = !(job.status === "failed" || job.status === "cancelled");
  cancel.hidden = FINISHED.has(job.status);
  retry.onclick = () =>
    void act(
      () => api(`jobs/${job.id}/retry`, { method: "POST" }),
      `Job ${job.id} sent back to its queue`,
    ).then(refresh);
  cancel.onclick = async () => {
    const ok = await confirmAction(
      `Cancel job ${job.id}?`,
      job.status === "running"
        ? "It is running: its handler's abort signal fires, and it ends cancelled."
        : "It will not run. A cancelled job can be retried later.",
      "Cancel the job",
      true,
    );
    if (ok)
      await act(() => api(`jobs/${job.id}/cancel`, { method: "POST" }), `Job ${job.id} cancelled`);
    refresh();
  };
}

/** @param {JobEvent[]} events */
function renderTimeline(events) {
  byId("timeline").replaceChildren(
    ...events.map((e) =>
      h(
        "li",
        { class: `event ${e.kind}` },
        when(e.at),
        " ",
        h("span", { class: "kind", text: e.kind.replaceAll("_", " ") }),
        e.attempt ? h("span", { class: "muted", text: ` attempt ${e.attempt}` }) : null,
        e.workerId ? h("span", { class: "muted mono", text: ` on ${e.workerId}` }) : null,
        e.message && e.message !== e.kind ? h("div", { class: "message", text: e.message }) : null,
        e.data?.error?.stack
          ? h(
              "details",
              {},
              h("summary", { text: "stack" }),
              h("pre", { class: "stack", text: e.data.error.stack }),
            )
          : e.data && e.kind === "log"
            ? h("pre", { class: "data", text: json(e.data) })
            : null,
      ),
    ),
  );
}

/**
 * Attempts, from the timeline: each starts at its `claimed` step and ends at the step that ended
 * it; a `retried` step starts a new run whose attempts count from 1 again.
 * @param {JobEvent[]} events
 */
function renderAttempts(events) {
  /** @type {Array<{ run: number, attempt: number, worker: string | null, started: string | null, ended: string | null, outcome: string, error: any }>} */
  const attempts = [];
  let run = 1;
  for (const e of events) {
    if (e.kind === "retried") {
      run++;
      continue;
    }
    if (e.attempt === null) continue;
    let row = attempts.find((a) => a.run === run && a.attempt === e.attempt);
    if (!row) {
      row = {
        run,
        attempt: e.attempt,
        worker: e.workerId,
        started: null,
        ended: null,
        outcome: "running",
        error: null,
      };
      attempts.push(row);
    }
    if (e.kind === "claimed") {
      row.started = e.at;
      row.worker = e.workerId;
    } else if (Object.hasOwn(ENDS, e.kind) && ENDS[e.kind]) {
      row.ended = e.at;
      row.outcome = ENDS[e.kind];
      if (e.data?.error) row.error = e.data.error;
    }
  }
  const runs = new Set(attempts.map((a) => a.run)).size;
  setRows(
    byId("attempts").querySelector("tbody"),
    attempts.map((a) =>
      h(
        "tr",
        {},
        h("td", { class: "num", text: runs > 1 ? `${a.run}.${a.attempt}` : String(a.attempt) }),
        h("td", { class: "mono", text: a.worker ?? "–" }),
        h("td", {}, when(a.started)),
        h("td", {}, when(a.ended)),
        h(
          "td",
          {},
          badge(
            a.outcome === "failed"
              ? "failed"
              : a.outcome === "completed"
                ? "completed"
                : a.outcome === "running"
                  ? "running"
                  : "retrying",
          ),
          a.outcome !== "failed" && a.outcome !== "completed" && a.outcome !== "running"
            ? ` ${a.outcome}`
            : "",
          a.error ? h("div", { class: "message", text: a.error.message ?? "" }) : null,
        ),
      ),
    ),
    "Not started yet.",
  );
}
