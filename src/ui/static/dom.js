// Building the page from data without ever parsing data as HTML: every value goes in as text
// (textContent, attributes), so a job's payload or error cannot inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * @typedef {Record<string, unknown>} Attributes
 * `class`, `text`, `dataset` (an object), `on<event>` (a listener), `hidden`/`disabled`
 * (booleans); anything else is set as an attribute when not null, undefined or false.
 */

/**
 * @param {Element} el
 * @param {Attributes} attrs
 */
function apply(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") el.textContent = String(value);
    else if (name === "dataset") Object.assign(/** @type {HTMLElement} */ (el).dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), /** @type {EventListener} */ (value));
    } else el.setAttribute(name, value === true ? "" : String(value));
  }
}

/**
 * @param {Element} el
 * @param {unknown[]} children
 */
function append(el, children) {
  for (const child of children.flat(Number.POSITIVE_INFINITY)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * An HTML element.
 * @param {string} tag
 * @param {Attributes} [attrs]
 * @param {...unknown} children text, nodes or arrays of them
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/**
 * An SVG element.
 * @param {string} tag
 * @param {Attributes} [attrs]
 * @param {...unknown} children
 * @returns {SVGElement}
 */
export function s(tag, attrs = {}, ...children) {
  const el = /** @type {SVGElement} */ (document.createElementNS(SVG_NS, tag));
  apply(el, attrs);
  append(el, children);
  return el;
}

/**
 * The element with this id (it is in the page's frame).
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el;
}

/**
 * Sets a table body's rows, or one row saying `empty` when there are none.
 * @param {HTMLElement} tbody
 * @param {HTMLElement[]} rows
 * @param {string} empty
 */
export function setRows(tbody, rows, empty) {
  const columns = tbody.closest("table")?.querySelectorAll("thead th").length ?? 1;
  tbody.replaceChildren(
    ...(rows.length > 0
      ? rows
      : [h("tr", {}, h("td", { colspan: columns, class: "empty", text: empty }))]),
  );
}

const INTEGER = new Intl.NumberFormat("en");

/**
 * @param {number} n
 * @param {boolean} [capped] the count stopped at a cap: at least n
 */
export function count(n, capped = false) {
  return INTEGER.format(n) + (capped ? "+" : "");
}

/**
 * A duration for people: 850 ms, 12.5 s, 4 min, 2 h 5 min, 3 d.
 * @param {number | null | undefined} ms
 */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 86_400_000) {
    const minutes = Math.round((ms % 3_600_000) / 60_000);
    return `${Math.floor(ms / 3_600_000)} h${minutes > 0 ? ` ${minutes} min` : ""}`;
  }
  return `${Math.round(ms / 86_400_000)} d`;
}

/**
 * A time in the browser's zone: the time of day for today, else the date too.
 * @param {string | null | undefined} iso
 */
export function time(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  const today = new Date().toDateString() === at.toDateString();
  return today
    ? at.toLocaleTimeString("en-GB", { hour12: false })
    : at.toLocaleString("en-GB", { hour12: false, dateStyle: "medium", timeStyle: "medium" });
}

/**
 * How long ago, from the browser's clock.
 * @param {string | null | undefined} iso
 */
export function ago(iso) {
  if (!iso) return "–";
  const ms = Date.now() - Date.parse(iso);
  return ms < 1_000 ? "just now" : `${duration(ms)} ago`;
}

/**
 * A <time> element showing `time(iso)` with the exact instant as its title.
 * @param {string | null | undefined} iso
 * @param {(iso: string) => string} [show]
 */
export function when(iso, show = time) {
  if (!iso) return h("span", { class: "muted", text: "–" });
  return h("time", { datetime: iso, title: iso, text: show(iso) });
}

/**
 * A status badge.
 * @param {string} status
 */
export function badge(status) {
  return h("span", { class: `badge ${status}`, text: status });
}

/**
 * JSON for people, two spaces deep.
 * @param {unknown} value
 */
export function json(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}
