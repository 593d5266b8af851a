// The dashboard's entry: the theme switch, the sign-in, and the page's own module. Loaded as an
// ES module from /ui/assets; each page is a frame rendered by the server with no data in it
// (body[data-page]), filled here from the API.

import { announce } from "./actions.js";
import { api, onKeyRefused, storedKey, storeKey } from "./api.js";
import { byId } from "./dom.js";
import { onPollReport, stopPolls } from "./poll.js";

const PAGES = {
  overview: () => import("./page-overview.js"),
  jobs: () => import("./page-jobs.js"),
  job: () => import("./page-job.js"),
  queue: () => import("./page-queue.js"),
  schedules: () => import("./page-schedules.js"),
};

const THEMES = ["auto", "light", "dark"];

function setUpTheme() {
  const button = byId("theme");
  const show = () => {
    const theme = document.documentElement.dataset.theme ?? "auto";
    button.textContent = theme === "auto" ? "Theme: auto" : `Theme: ${theme}`;
    button.title =
      theme === "auto"
        ? "Follows the system; click for light"
        : `Click for ${THEMES[(THEMES.indexOf(theme) + 1) % 3]}`;
  };
  button.addEventListener("click", () => {
    const current = document.documentElement.dataset.theme ?? "auto";
    const next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
    if (next === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = next;
    try {
      localStorage.setItem("pgwake.theme", next);
    } catch {
      // The choice lasts as long as the page.
    }
    show();
  });
  show();
}

function setUpLiveMark() {
  const mark = byId("live");
  onPollReport((ok, message) => {
    mark.className = ok ? "live ok" : "live down";
    mark.textContent = ok ? "Live" : "Offline";
    mark.title = ok ? `Updated ${new Date().toLocaleTimeString("en-GB")}` : (message ?? "");
  });
}

/**
 * Shows the sign-in form; `refused` says the key given was refused.
 * @param {string | null} refused
 */
function askForKey(refused) {
  stopPolls();
  byId("main").hidden = true;
  byId("sign-out").hidden = true;
  const form = byId("sign-in");
  form.hidden = false;
  const error = byId("sign-in-error");
  error.hidden = refused === null;
  error.textContent = refused ?? "";
  /** @type {HTMLInputElement} */ (byId("sign-in-key")).focus();
}

/** Runs the page: the frame is shown and its module starts polling. */
async function run() {
  byId("sign-in").hidden = true;
  byId("main").hidden = false;
  byId("sign-out").hidden = storedKey() === null;
  const page = /** @type {keyof typeof PAGES} */ (document.body.dataset.page);
  const module = await PAGES[page]();
  module.start();
}

async function main() {
  setUpTheme();
  setUpLiveMark();
  onKeyRefused((error) => {
    // The key stopped working (rotated away): sign in again.
    storeKey(null);
    askForKey(error.status === 403 ? "The server refused the key this tab signed in with." : null);
  });
  byId("sign-out").addEventListener("click", () => {
    storeKey(null);
    window.location.reload();
  });
  byId("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ (byId("sign-in-key"));
    const key = input.value.trim();
    if (key === "") return;
    try {
      await api("queues", { key });
    } catch (error) {
      const e = /** @type {{ status?: number, code?: string, message?: string }} */ (error);
      const refused = e.status === 401 || e.status === 403;
      askForKey(
        refused
          ? `That key was refused (${e.code}): check it against PGWAKE_API_KEYS.`
          : `The server could not check the key: ${e.message}`,
      );
      input.select();
      return;
    }
    input.value = "";
    storeKey(key);
    await run();
  });

  // Does the API want a key, and is the one this tab holds (if any) good?
  try {
    await api("queues", { key: storedKey() });
  } catch (error) {
    const e = /** @type {{ status?: number }} */ (error);
    if (e.status === 401 || e.status === 403) {
      const had = storedKey() !== null;
      storeKey(null);
      askForKey(
        had && e.status === 403 ? "The server refused the key this tab signed in with." : null,
      );
      return;
    }
    // Anything else (the database down…) is the page's to show as it polls.
    announce(`The API answered: ${/** @type {Error} */ (error).message}`, "error");
  }
  await run();
}

void main();
