// Small SVG charts (bars and lines), each with its numbers in a table below it (folded
// under "Numbers") for screen readers and for anyone who wants the exact figures.
// Colours come from style.css through class names; labels are text nodes like
// everything else. Each chart is drawn at the width it is shown at (redrawn when that
// changes), so its text stays the size style.css gives it, on a phone as on a desk.

import { h, newId, s } from "./dom.js";
import { formatCount } from "./format.js";

const MOST_WIDTH = 640;
const LEAST_WIDTH = 240;
const CHAR = 7; // about how wide a character of the charts' 12px text is

/** A round number at or above *max*, for an axis: 1, 2, 5, 10, 20, 50, ... */
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

/**
 * Whole-number ticks for counts up to *max*: 0 to a top at or above max in steps of
 * 1, 2 or 5 times a power of ten, at most about five of them (3 gives 0, 1, 2, 3).
 */
export function countTicks(max) {
  const most = max > 0 ? max : 1;
  const raw = Math.max(1, most / 4);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw);
  const top = Math.ceil(most / step) * step;
  const ticks = [];
  for (let value = 0; value <= top; value += step) ticks.push(value);
  return ticks;
}

function truncate(text, length) {
  return text.length > length ? `${text.slice(0, Math.max(1, length - 1))}…` : text;
}

function widthOf(el) {
  const width = el.clientWidth || document.documentElement.clientWidth - 60;
  return Math.round(Math.min(MOST_WIDTH, Math.max(LEAST_WIDTH, width)));
}

/** A figure whose SVG draw(width) makes, redrawn whenever the room for it changes. */
function figure(title, draw, headers, rows, legend) {
  const captionId = newId("chart");
  const place = h("div", { class: "chart-drawing" });
  let drawnAt = 0;
  const redraw = () => {
    const width = widthOf(place);
    if (width === drawnAt) return;
    drawnAt = width;
    const svg = draw(width);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-labelledby", captionId);
    place.replaceChildren(svg);
  };
  redraw();
  new ResizeObserver(redraw).observe(place);
  return h("figure", { class: "chart" },
    h("figcaption", { id: captionId }, title),
    legend ? h("div", { class: "legend" }, legend) : null,
    place,
    h("details", { class: "chart-data" },
      h("summary", {}, "Numbers"),
      h("table", {},
        h("thead", {}, h("tr", {}, headers.map((name, i) => h("th", { scope: "col", class: i ? "num" : "" }, name)))),
        h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) => h(i ? "td" : "th", i ? { class: "num" } : { scope: "row" }, cell))))))));
}

/** Horizontal bars: one row per item ({label, value, href?}); a bar with an href is a link. */
export function barChart(title, items, valueName) {
  const draw = (width) => {
    const row = 26;
    const labelWidth = Math.round(Math.min(180, width * 0.38));
    const max = Math.max(1, ...items.map((item) => item.value));
    const room = width - labelWidth - 8 - CHAR * Math.max(1, ...items.map((item) => formatCount(item.value).length)) - 6;
    const svg = s("svg", { viewBox: `0 0 ${width} ${Math.max(row, items.length * row) + 4}`, class: "bars" });
    items.forEach((item, i) => {
      const y = i * row + 2;
      const barWidth = Math.max(item.value > 0 ? 2 : 0, (item.value / max) * room);
      const group = s("g", { class: "bar" },
        s("title", {}, `${item.label}: ${formatCount(item.value)}`),
        s("text", { x: labelWidth - 8, y: y + row / 2, class: "label", "text-anchor": "end", "dominant-baseline": "middle" },
          truncate(item.label, Math.floor((labelWidth - 8) / CHAR))),
        s("rect", { x: labelWidth, y: y + 3, width: barWidth, height: row - 8, rx: 3 }),
        s("text", { x: labelWidth + barWidth + 6, y: y + row / 2, class: "value", "dominant-baseline": "middle" }, formatCount(item.value)));
      svg.append(item.href ? s("a", { href: item.href, "aria-label": `${item.label}: ${formatCount(item.value)}` }, group) : group);
    });
    return svg;
  };
  return figure(title, draw, ["", valueName], items.map((item) => [item.label, formatCount(item.value)]));
}

/** Vertical bars over ordered buckets ({label, value}), e.g. a histogram. */
export function columnChart(title, items, valueName, bucketName) {
  const draw = (width) => {
    const height = 220;
    const top = 14;
    const bottom = 40;
    const ticks = countTicks(Math.max(0, ...items.map((item) => item.value)));
    const left = 12 + CHAR * formatCount(ticks[ticks.length - 1]).length;
    const plot = height - top - bottom;
    const max = ticks[ticks.length - 1];
    const slot = (width - left - 8) / Math.max(1, items.length);
    // Label every bucket when they fit, else every second, third... one.
    const widest = Math.max(1, ...items.map((item) => item.label.length)) * CHAR + 6;
    const every = Math.max(1, Math.ceil(widest / slot));
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "columns" });
    svg.append(...axis(left, top, plot, ticks, width));
    items.forEach((item, i) => {
      const barHeight = (item.value / max) * plot;
      const x = left + i * slot;
      svg.append(s("g", { class: "bar" },
        s("title", {}, `${item.label} ${bucketName}: ${formatCount(item.value)}`),
        s("rect", { x: x + slot * 0.15, y: top + plot - barHeight, width: slot * 0.7, height: barHeight, rx: 2 }),
        i % every === 0 ? s("text", { x: x + slot / 2, y: height - bottom + 16, class: "tick", "text-anchor": "middle" }, item.label) : null));
    });
    return svg;
  };
  return figure(title, draw, [bucketName, valueName], items.map((item) => [item.label, formatCount(item.value)]));
}

function axis(left, top, plot, ticks, width) {
  const max = ticks[ticks.length - 1];
  return ticks.map((value) => {
    const y = top + plot - (value / max) * plot;
    return s("g", { class: "grid" },
      s("line", { x1: left, x2: width - 4, y1: y, y2: y }),
      s("text", { x: left - 6, y, class: "tick", "text-anchor": "end", "dominant-baseline": "middle" }, formatCount(value)));
  });
}

/** Lines over shared x labels: series = [{name, values, cls}]. */
export function lineChart(title, labels, series) {
  const draw = (width) => {
    const height = 240;
    const top = 14;
    const bottom = 40;
    const ticks = countTicks(Math.max(0, ...series.flatMap((line) => line.values)));
    const left = 12 + CHAR * formatCount(ticks[ticks.length - 1]).length;
    const plot = height - top - bottom;
    const max = ticks[ticks.length - 1];
    const step = (width - left - 16) / Math.max(1, labels.length - 1);
    const x = (i) => left + 8 + i * step;
    const y = (v) => top + plot - (v / max) * plot;
    // A date every week when there is room for it, every two weeks when not.
    const every = step * 7 >= 6 * CHAR + 8 ? 7 : 14;
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "lines" });
    svg.append(...axis(left, top, plot, ticks, width));
    labels.forEach((label, i) => {
      const last = i === labels.length - 1;
      if (last || ((labels.length - 1 - i) % every === 0 && (labels.length - 1 - i) * step >= 6 * CHAR + 8)) {
        svg.append(s("text", { x: x(i), y: height - bottom + 16, class: "tick", "text-anchor": last ? "end" : "middle" }, label.slice(5)));
      }
    });
    for (const line of series) {
      const points = line.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      svg.append(s("polyline", { points, class: `series ${line.cls}` }));
      line.values.forEach((v, i) => {
        svg.append(s("circle", { cx: x(i), cy: y(v), r: 3, class: `point ${line.cls}` }, s("title", {}, `${labels[i]}: ${formatCount(v)} ${line.name}`)));
      });
    }
    return svg;
  };
  const legend = series.map((line) => h("span", { class: `key-item ${line.cls}` }, h("span", { class: "swatch", "aria-hidden": "true" }), line.name));
  const rows = labels.map((label, i) => [label, ...series.map((line) => formatCount(line.values[i]))]);
  return figure(title, draw, ["Day (UTC)", ...series.map((line) => line.name)], rows, legend);
}
