// The API, from the browser. The key the tab signed in with is kept in sessionStorage (this tab
// only, gone when it closes; /docs reads the same entry) and sent as a bearer header: never in an
// address, so never in a log, a history or a Referer. The page's Content-Security-Policy lets no
// script run but these files, which put data in the page only as text.

const KEY_ENTRY = "pgwake.apiKey";

/** The API's root: the page's `pgwake-root`, relative to the page (a mounted app works). */
const root = new URL(
  document.querySelector('meta[name="pgwake-root"]')?.getAttribute("content") ?? "/",
  window.location.href,
);

/** A refusal of the API, with its stable code. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {unknown} [details]
   */
  constructor(status, code, message, details) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** @type {(error: ApiError) => void} */
let onRefused = () => {};

/**
 * Called when the API refuses the key (401 without one, 403 with a wrong one).
 * @param {(error: ApiError) => void} listener
 */
export function onKeyRefused(listener) {
  onRefused = listener;
}

/** @returns {string | null} */
export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_ENTRY);
  } catch {
    return null;
  }
}

/** @param {string | null} key */
export function storeKey(key) {
  try {
    if (key === null) sessionStorage.removeItem(KEY_ENTRY);
    else sessionStorage.setItem(KEY_ENTRY, key);
  } catch {
    // No storage: the key lasts as long as the page.
  }
  memoryKey = key;
}

/** @type {string | null} */
let memoryKey = storedKey();

/**
 * An address under the API's root.
 * @param {string} path relative, e.g. "jobs/12"
 * @param {Record<string, string | number | undefined | null>} [query]
 */
export function apiUrl(path, query = {}) {
  const url = new URL(path, root);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") {
      url.searchParams.set(name, String(value));
    }
  }
  return url;
}

/**
 * An address of the dashboard.
 * @param {string} path e.g. "jobs/12", "" for the overview
 */
export function uiUrl(path) {
  return new URL(path === "" ? "ui" : `ui/${path}`, root).href;
}

/**
 * Calls the API; answers its JSON, or throws an ApiError.
 * @param {string} path
 * @param {{ method?: string, body?: unknown, query?: Record<string, string | number | undefined | null>, key?: string | null }} [options]
 */
export async function api(path, options = {}) {
  const key = options.key === undefined ? memoryKey : options.key;
  /** @type {Record<string, string>} */
  const headers = { accept: "application/json" };
  if (key) headers.authorization = `Bearer ${key}`;
  /** @type {RequestInit} */
  const init = { method: options.method ?? "GET", headers, cache: "no-store" };
  if (options.body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let res;
  try {
    res = await fetch(apiUrl(path, options.query), init);
  } catch {
    throw new ApiError(0, "NETWORK", "the server does not answer");
  }
  const data = await res.json().catch(() => null);
  if (res.ok) return data;
  const error = new ApiError(
    res.status,
    data?.error?.code ?? `HTTP_${res.status}`,
    data?.error?.message ?? res.statusText,
    data?.error?.details,
  );
  if ((res.status === 401 || res.status === 403) && options.key === undefined) onRefused(error);
  throw error;
}
