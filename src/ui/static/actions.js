// Actions the dashboard takes on the user's word: confirmation where they cannot be undone, the
// outcome or the refusal shown in the banner.

import { byId } from "./dom.js";

/**
 * Shows a message in the banner; errors stay until the next message, others fade after a while.
 * @param {string} message
 * @param {"info" | "error"} [kind]
 */
export function announce(message, kind = "info") {
  const banner = byId("banner");
  banner.textContent = message;
  banner.className = `banner ${kind}`;
  banner.hidden = false;
  clearTimeout(Number(banner.dataset.timer));
  if (kind === "info") {
    banner.dataset.timer = String(setTimeout(() => (banner.hidden = true), 8_000));
  }
}

/**
 * Runs `request`; announces `done` (or what it answers) or the API's refusal.
 * @template T
 * @param {() => Promise<T>} request
 * @param {string | ((answer: T) => string)} done
 * @returns {Promise<T | undefined>}
 */
export async function act(request, done) {
  try {
    const answer = await request();
    announce(typeof done === "function" ? done(answer) : done);
    return answer;
  } catch (error) {
    const e = /** @type {{ code?: string, message?: string }} */ (error);
    announce(`Refused${e.code ? ` (${e.code})` : ""}: ${e.message ?? String(error)}`, "error");
    return undefined;
  }
}

/**
 * Asks before an action: resolves true when the user confirms.
 * @param {string} title
 * @param {string} text
 * @param {string} yes the label of the confirming button
 * @param {boolean} [danger]
 */
export function confirmAction(title, text, yes, danger = false) {
  const dialog = /** @type {HTMLDialogElement} */ (byId("confirm"));
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  const button = byId("confirm-yes");
  button.textContent = yes;
  button.className = danger ? "danger" : "";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
