// Charts drawn as inline SVG: a few lines of points per series, axes with three ticks, and a
// title on every point for the exact value. No library: what is drawn here is all there is.

import { h, s } from "./dom.js";

const WIDTH = 640;
const HEIGHT = 200;
const PAD = { left: 52, right: 12, top: 12, bottom: 26 };
/** Series beyond this many are summed into one "others" line. */
export const MAX_SERIES = 6;

/**
 * @typedef {{ name: string, values: (number | null)[], color?: number }} Series
 * One value per minute, oldest first; null where there is nothing to draw. `color`: which of
 * the palette's colors (c0…c5), by default the series' place.
 */

/** A round number at or above `max`, for the top of the axis. */
function niceTop(max) {
  if (max <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  // Even multiples, so the middle tick is a round number too.
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * step >= max) return m * step;
  return 10 * step;
}

/**
 * Draws `series` over `minutes` (the start of each minute, oldest first) into `svg`, and its
 * legend into `legend`.
 * @param {SVGElement} svg
 * @param {HTMLElement} legend
 * @param {{ minutes: Date[], series: Series[], format: (v: number) => string, empty: string, minTop?: number }} chart
 *   `minTop`: the least top of the axis (so an idle chart does not scale up noise)
 */
export function lineChart(svg, legend, chart) {
  const { minutes, series, format } = chart;
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const values = series.flatMap((one) => one.values.filter((v) => v !== null));
  const top = niceTop(Math.max(chart.minTop ?? 0, ...values));
  const n = Math.max(1, minutes.length - 1);
  const x = (i) => PAD.left + (i / n) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / top) * (HEIGHT - PAD.top - PAD.bottom);

  const grid = [0, top / 2, top].map((v) =>
    s(
      "g",
      { class: "tick" },
      s("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v) }),
      s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", text: format(v) }),
    ),
  );
  const labels = minutes.length
    ? [0, Math.floor((minutes.length - 1) / 2), minutes.length - 1].map((i) =>
        s("text", {
          class: "axis",
          x: x(i),
          y: HEIGHT - 6,
          "text-anchor": i === 0 ? "start" : i === minutes.length - 1 ? "end" : "middle",
          text: minutes[i]?.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }),
        }),
      )
    : [];
  const lines = series.map((one, k) => {
    let d = "";
    let pen = false;
    const dots = [];
    one.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      if (v > 0) {
        dots.push(
          s(
            "circle",
            { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 },
            s("title", {
              text: `${one.name} ${minutes[i]?.toLocaleTimeString("en-GB")}: ${format(v)}`,
            }),
          ),
        );
      }
    });
    return s(
      "g",
      { class: `series c${one.color ?? k}`, dataset: { series: one.name } },
      s("path", { d }),
      dots,
    );
  });
  const empty =
    values.length === 0 || values.every((v) => v === 0)
      ? s("text", {
          class: "nothing",
          x: WIDTH / 2,
          y: HEIGHT / 2,
          "text-anchor": "middle",
          text: chart.empty,
        })
      : null;
  svg.replaceChildren(...grid, ...labels, ...lines, ...(empty ? [empty] : []));
  legend.replaceChildren(
    ...series.map((one, k) =>
      h(
        "li",
        { class: `c${one.color ?? k}` },
        h("span", { class: "swatch", "aria-hidden": "true" }),
        one.name,
      ),
    ),
  );
}

/**
 * A small line of values for a table cell.
 * @param {(number | null)[]} values
 * @param {string} label
 */
export function sparkline(values, label) {
  const w = 90;
  const hgt = 22;
  const max = Math.max(1, ...values.map((v) => v ?? 0));
  const step = w / Math.max(1, values.length - 1);
  const d = values
    .map(
      (v, i) =>
        `${i === 0 ? "M" : "L"}${(i * step).toFixed(1)},${(hgt - 1 - ((v ?? 0) / max) * (hgt - 2)).toFixed(1)}`,
    )
    .join("");
  return s(
    "svg",
    {
      class: "spark",
      viewBox: `0 0 ${w} ${hgt}`,
      width: w,
      height: hgt,
      role: "img",
      "aria-label": label,
    },
    s("title", { text: label }),
    s("path", { d }),
  );
}

/**
 * Keeps the `MAX_SERIES - 1` largest series by total and sums the rest into "others".
 * @param {Series[]} series
 */
export function topSeries(series) {
  if (series.length <= MAX_SERIES) return series;
  const total = (/** @type {Series} */ one) => one.values.reduce((a, v) => a + (v ?? 0), 0);
  const sorted = [...series].sort((a, b) => total(b) - total(a));
  const kept = sorted.slice(0, MAX_SERIES - 1);
  const rest = sorted.slice(MAX_SERIES - 1);
  const others = rest[0].values.map((_, i) =>
    rest.reduce((sum, one) => sum + (one.values[i] ?? 0), 0),
  );
  return [...kept, { name: `${rest.length} others`, values: others }];
}
