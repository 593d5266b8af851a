import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

// The dashboard's pages, rendered on the server as frames without data: the header, the page's
// headings, tables and forms. The script (static/app.js) fills them from the API with the key the
// tab signed in with, so a page needs no key and holds nothing about this server: every byte of
// data goes through the API's own checks. Values placed here (a job id, a queue name from the
// path) are escaped by the `html` tag.

/** Which page, and how deep below `/ui` its path is (links are relative: a mounted app works). */
export type PageName = "overview" | "jobs" | "job" | "queue" | "schedules";

const DEPTH: Record<PageName, number> = { overview: 0, jobs: 1, job: 2, queue: 2, schedules: 1 };

/** The prefix that leads from a page to the API's root (`/`), relative to the page. */
export function rootOf(page: PageName): string {
  const depth = DEPTH[page];
  return depth === 0 ? "./" : "../".repeat(depth);
}

/**
 * The page's Content-Security-Policy: scripts and styles only from this server and only from
 * files (no inline code, so injected markup cannot run), requests only to this server, no forms
 * posted anywhere (the sign-in is handled by the script), not framed.
 */
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

const TITLES: Record<PageName, string> = {
  overview: "Overview",
  jobs: "Jobs",
  job: "Job",
  queue: "Queue",
  schedules: "Schedules",
};

function layout(page: PageName, title: string, body: Html, data: Record<string, string> = {}) {
  const root = rootOf(page);
  const ui = `${root}ui`;
  const assets = `${ui}/assets`;
  const nav = (target: PageName, href: string, label: string) =>
    html`<a href="${href}" ${page === target || (page === "job" && target === "jobs") ? html`aria-current="page"` : ""}>${label}</a>`;
  const attributes = Object.entries(data).map(([name, value]) => html` data-${name}="${value}"`);
  return html`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <meta name="pgwake-root" content="${root}">
  <title>${title} · pgwake</title>
  <link rel="icon" href="${assets}/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="${assets}/app.css">
  <script src="${assets}/theme.js"></script>
  <script type="module" src="${assets}/app.js"></script>
</head>
<body data-page="${page}"${attributes}>
  <header class="top">
    <a class="brand" href="${ui}">pgwake</a>
    <nav aria-label="Sections">
      ${nav("overview", ui, "Overview")}
      ${nav("jobs", `${ui}/jobs`, "Jobs")}
      ${nav("schedules", `${ui}/schedules`, "Schedules")}
    </nav>
    <span class="live" id="live" role="status" aria-live="polite"></span>
    <button type="button" class="ghost" id="theme" title="Theme: follows the system">Theme</button>
    <button type="button" class="ghost" id="sign-out" hidden>Sign out</button>
  </header>
  <div class="banner" id="banner" role="alert" hidden></div>
  <form class="sign-in card" id="sign-in" method="post" hidden>
    <h1>Sign in</h1>
    <p>This server needs an API key: one of the keys in <code>PGWAKE_API_KEYS</code>. It is kept in
      this tab only (session storage) and sent as <code>Authorization: Bearer …</code>; it never goes
      into an address or a log.</p>
    <p class="error" id="sign-in-error" role="alert" hidden></p>
    <label for="sign-in-key">API key</label>
    <input id="sign-in-key" name="key" type="password" autocomplete="off" required>
    <button type="submit">Sign in</button>
  </form>
  <main id="main" hidden>
${body}
  </main>
  <dialog id="confirm">
    <form method="dialog">
      <h2 id="confirm-title">Confirm</h2>
      <p id="confirm-text"></p>
      <div class="actions">
        <button value="cancel" class="ghost" id="confirm-no">Back</button>
        <button value="ok" id="confirm-yes">Confirm</button>
      </div>
    </form>
  </dialog>
</body>
</html>
`;
}

const overview = html`
    <h1>Overview</h1>
    <section aria-labelledby="queues-title">
      <h2 id="queues-title">Queues</h2>
      <div class="scroll">
        <table id="queues" class="data">
          <thead><tr>
            <th scope="col">Queue</th><th scope="col" class="num">Pending</th>
            <th scope="col" class="num">Scheduled</th><th scope="col" class="num">Running</th>
            <th scope="col" class="num">Retrying</th><th scope="col" class="num">Failed</th>
            <th scope="col" class="num">Cancelled</th><th scope="col" class="num">Completed</th>
            <th scope="col" class="num">Oldest wait</th><th scope="col">Last hour</th>
            <th scope="col" class="num">Workers</th><th scope="col"></th>
          </tr></thead>
          <tbody><tr><td colspan="12" class="empty">Loading…</td></tr></tbody>
        </table>
      </div>
      <p class="note">Counts of waiting and dead jobs are exact up to 10,000 (shown as 10,000+);
        completed counts the retention period.</p>
    </section>
    <section class="charts" aria-label="The last hour">
      <figure class="card">
        <figcaption>Jobs completed per minute, last hour</figcaption>
        <svg id="chart-throughput" class="chart" role="img" aria-label="Jobs completed per minute"></svg>
        <ul class="legend" id="legend-throughput"></ul>
      </figure>
      <figure class="card">
        <figcaption>Mean wait before start, last hour</figcaption>
        <svg id="chart-wait" class="chart" role="img" aria-label="Mean wait per minute"></svg>
        <ul class="legend" id="legend-wait"></ul>
      </figure>
    </section>
    <section aria-labelledby="fleet-title">
      <h2 id="fleet-title">Fleet</h2>
      <div class="scroll">
        <table id="workers" class="data">
          <thead><tr>
            <th scope="col">Worker</th><th scope="col">Host</th><th scope="col" class="num">PID</th>
            <th scope="col">Queues</th><th scope="col" class="num">Running</th>
            <th scope="col">Listening</th><th scope="col">Started</th><th scope="col">Last heartbeat</th>
          </tr></thead>
          <tbody><tr><td colspan="8" class="empty">Loading…</td></tr></tbody>
        </table>
      </div>
    </section>`;

const STATUSES = [
  "scheduled",
  "pending",
  "running",
  "retrying",
  "completed",
  "failed",
  "cancelled",
] as const;

const jobs = html`
    <h1>Jobs</h1>
    <form id="filters" class="filters card" method="get">
      <label>Queue <input name="queue" id="f-queue" list="queue-names" autocomplete="off" pattern="[A-Za-z0-9_.:\\-]{1,128}"></label>
      <datalist id="queue-names"></datalist>
      <label>Task <input name="task" id="f-task" autocomplete="off" pattern="[A-Za-z0-9_.:\\-]{1,128}"></label>
      <label>Created
        <select name="since" id="f-since">
          <option value="">any time</option>
          <option value="15m">last 15 minutes</option>
          <option value="1h">last hour</option>
          <option value="24h">last 24 hours</option>
          <option value="7d">last 7 days</option>
        </select>
      </label>
      <fieldset class="statuses">
        <legend>Status</legend>
        ${STATUSES.map(
          (s) =>
            html`<label class="status-pick"><input type="checkbox" name="status" value="${s}"> <span class="badge ${s}">${s}</span></label>`,
        )}
      </fieldset>
      <div class="actions">
        <button type="submit">Show</button>
        <a class="button ghost" href="./jobs">Clear</a>
      </div>
    </form>
    <form id="goto" class="goto" method="get">
      <label>Job id <input name="id" id="goto-id" inputmode="numeric" pattern="[0-9]{1,16}" required></label>
      <button type="submit" class="ghost">Open</button>
    </form>
    <div class="bulk card" id="bulk" aria-label="Bulk actions">
      <span id="bulk-scope">Every job matching the filter:</span>
      <button type="button" data-bulk="retry">Retry matching…</button>
      <button type="button" data-bulk="cancel">Cancel matching…</button>
      <button type="button" data-bulk="delete" class="danger">Delete matching…</button>
    </div>
    <div class="scroll">
      <table id="jobs" class="data">
        <thead><tr>
          <th scope="col" class="num">Id</th><th scope="col">Queue</th><th scope="col">Task</th>
          <th scope="col">Status</th><th scope="col" class="num">Attempts</th>
          <th scope="col">Created</th><th scope="col">Finished</th>
        </tr></thead>
        <tbody><tr><td colspan="7" class="empty">Loading…</td></tr></tbody>
      </table>
    </div>
    <nav class="pager" aria-label="Pages">
      <button type="button" class="ghost" id="newer" disabled>← Newer</button>
      <button type="button" class="ghost" id="older" disabled>Older →</button>
    </nav>`;

function job(id: string) {
  return html`
    <h1>Job <span id="job-id">${id}</span> <span class="badge" id="job-status"></span></h1>
    <div class="actions" id="job-actions">
      <button type="button" id="job-retry" hidden>Retry</button>
      <button type="button" id="job-cancel" class="danger" hidden>Cancel</button>
    </div>
    <dl class="facts card" id="job-facts"></dl>
    <section id="job-error" class="card error-card" hidden>
      <h2>Last error</h2>
      <p class="error-message" id="job-error-message"></p>
      <pre class="stack" id="job-error-stack"></pre>
    </section>
    <div class="columns">
      <section class="card"><h2>Payload</h2><pre id="job-payload"></pre></section>
      <section class="card"><h2>Result</h2><pre id="job-result"></pre></section>
    </div>
    <section class="card">
      <h2>Attempts</h2>
      <div class="scroll">
        <table id="attempts" class="data">
          <thead><tr>
            <th scope="col" class="num">Attempt</th><th scope="col">Worker</th>
            <th scope="col">Started</th><th scope="col">Ended</th><th scope="col">Outcome</th>
          </tr></thead>
          <tbody></tbody>
        </table>
      </div>
    </section>
    <section class="card">
      <h2>Timeline</h2>
      <ol class="timeline" id="timeline"></ol>
    </section>`;
}

function queue(name: string) {
  return html`
    <h1>Queue <span id="queue-name">${name}</span> <span class="badge" id="queue-state"></span></h1>
    <div class="actions">
      <button type="button" id="queue-pause" hidden>Pause</button>
      <button type="button" id="queue-resume" hidden>Resume</button>
      <a class="button ghost" id="queue-jobs" href="../jobs?queue=${encodeURIComponent(name)}">Jobs</a>
      <a class="button ghost" id="queue-failed" href="../jobs?queue=${encodeURIComponent(name)}&amp;status=failed">Failed jobs</a>
    </div>
    <dl class="counts" id="queue-counts"></dl>
    <section class="charts" aria-label="The last hour">
      <figure class="card">
        <figcaption>Completed, failed and retried per minute, last hour</figcaption>
        <svg id="chart-throughput" class="chart" role="img" aria-label="Jobs per minute"></svg>
        <ul class="legend" id="legend-throughput"></ul>
      </figure>
      <figure class="card">
        <figcaption>Mean wait and run time, last hour</figcaption>
        <svg id="chart-wait" class="chart" role="img" aria-label="Mean wait and run time"></svg>
        <ul class="legend" id="legend-wait"></ul>
      </figure>
    </section>
    <section class="card">
      <h2>Flow control</h2>
      <dl class="facts" id="queue-limits"></dl>
      <h3>Busiest keys</h3>
      <div class="scroll">
        <table id="queue-keys" class="data">
          <thead><tr>
            <th scope="col">Key</th><th scope="col" class="num">Running</th>
            <th scope="col" class="num">Tokens</th>
          </tr></thead>
          <tbody></tbody>
        </table>
      </div>
    </section>
    <section class="card">
      <h2>Workers serving it</h2>
      <ul id="queue-workers" class="plain"></ul>
    </section>`;
}

const schedules = html`
    <h1>Schedules</h1>
    <div class="scroll">
      <table id="schedules" class="data">
        <thead><tr>
          <th scope="col">Name</th><th scope="col">When</th><th scope="col">Task</th>
          <th scope="col">Queue</th><th scope="col">Next run</th><th scope="col">Last tick</th>
          <th scope="col" class="num">Fired</th><th scope="col">State</th><th scope="col"></th>
        </tr></thead>
        <tbody><tr><td colspan="9" class="empty">Loading…</td></tr></tbody>
      </table>
    </div>
    <nav class="pager" aria-label="Pages">
      <button type="button" class="ghost" id="more" hidden>More schedules</button>
    </nav>
    <section class="card" id="schedule-detail" hidden>
      <h2 id="schedule-detail-title"></h2>
      <div class="columns">
        <div><h3>Next runs</h3><ol id="schedule-upcoming" class="plain"></ol></div>
        <div><h3>Recent runs</h3><ol id="schedule-runs" class="plain"></ol></div>
      </div>
    </section>`;

/** The HTML of a page. */
export function renderPage(page: PageName, params: { id?: string; name?: string } = {}): Html {
  switch (page) {
    case "overview":
      return layout(page, TITLES.overview, overview);
    case "jobs":
      return layout(page, TITLES.jobs, jobs);
    case "job": {
      const id = params.id ?? "";
      return layout(page, `${TITLES.job} ${id}`, job(id), { id });
    }
    case "queue": {
      const name = params.name ?? "";
      return layout(page, `${TITLES.queue} ${name}`, queue(name), { name });
    }
    case "schedules":
      return layout(page, TITLES.schedules, schedules);
  }
}
