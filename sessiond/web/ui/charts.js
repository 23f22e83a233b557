// Small SVG charts (bars and lines), each with its numbers in a table beside it for
// screen readers and for anyone who wants the exact figures. Colours come from
// style.css through class names; labels are text nodes like everything else.

import { formatCount, h, newId, s } from "./dom.js";

const WIDTH = 640;

/** A round number at or above *max*, for an axis: 1, 2, 5, 10, 20, 50, ... */
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

function truncate(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

function figure(title, chart, headers, rows, legend) {
  const captionId = newId("chart");
  chart.setAttribute("role", "img");
  chart.setAttribute("aria-labelledby", captionId);
  return h("figure", { class: "chart" },
    h("figcaption", { id: captionId }, title, legend ? h("span", { class: "legend" }, legend) : null),
    chart,
    h("details", { class: "chart-data" },
      h("summary", {}, "Numbers"),
      h("table", {},
        h("thead", {}, h("tr", {}, headers.map((name, i) => h("th", { scope: "col", class: i ? "num" : "" }, name)))),
        h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) => h(i ? "td" : "th", i ? { class: "num" } : { scope: "row" }, cell))))))));
}

/** Horizontal bars: one row per item ({label, value, href?}); a bar with an href is a link. */
export function barChart(title, items, valueName) {
  const row = 26;
  const labelWidth = 180;
  const max = Math.max(1, ...items.map((item) => item.value));
  const room = WIDTH - labelWidth - 70;
  const svg = s("svg", { viewBox: `0 0 ${WIDTH} ${Math.max(row, items.length * row) + 4}`, class: "bars" });
  items.forEach((item, i) => {
    const y = i * row + 2;
    const width = Math.max(item.value > 0 ? 2 : 0, (item.value / max) * room);
    const group = s("g", { class: "bar" },
      s("title", {}, `${item.label}: ${formatCount(item.value)}`),
      s("text", { x: labelWidth - 8, y: y + row / 2, class: "label", "text-anchor": "end", "dominant-baseline": "middle" }, truncate(item.label, 24)),
      s("rect", { x: labelWidth, y: y + 3, width, height: row - 8, rx: 3 }),
      s("text", { x: labelWidth + width + 6, y: y + row / 2, class: "value", "dominant-baseline": "middle" }, formatCount(item.value)));
    svg.append(item.href ? s("a", { href: item.href, "aria-label": `${item.label}: ${formatCount(item.value)}` }, group) : group);
  });
  return figure(title, svg, ["", valueName], items.map((item) => [item.label, formatCount(item.value)]));
}

/** Vertical bars over ordered buckets ({label, value}), e.g. a histogram. */
export function columnChart(title, items, valueName, bucketName) {
  const height = 220;
  const top = 14;
  const bottom = 40;
  const left = 48;
  const plot = height - top - bottom;
  const max = niceMax(Math.max(0, ...items.map((item) => item.value)));
  const slot = (WIDTH - left - 8) / Math.max(1, items.length);
  const svg = s("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "columns" });
  svg.append(...axis(left, top, plot, max));
  items.forEach((item, i) => {
    const barHeight = (item.value / max) * plot;
    const x = left + i * slot;
    svg.append(s("g", { class: "bar" },
      s("title", {}, `${item.label} ${bucketName}: ${formatCount(item.value)}`),
      s("rect", { x: x + slot * 0.15, y: top + plot - barHeight, width: slot * 0.7, height: barHeight, rx: 2 }),
      s("text", { x: x + slot / 2, y: height - bottom + 16, class: "tick", "text-anchor": "middle" }, item.label)));
  });
  return figure(title, svg, [bucketName, valueName], items.map((item) => [item.label, formatCount(item.value)]));
}

function axis(left, top, plot, max) {
  const fractions = Number.isInteger(max / 2) ? [0, 0.5, 1] : [0, 1]; // counts: no half ticks
  return fractions.map((fraction) => {
    const y = top + plot - fraction * plot;
    return s("g", { class: "grid" },
      s("line", { x1: left, x2: WIDTH - 4, y1: y, y2: y }),
      s("text", { x: left - 6, y, class: "tick", "text-anchor": "end", "dominant-baseline": "middle" }, formatCount(max * fraction)));
  });
}

/** Lines over shared x labels: series = [{name, values, cls}]. */
export function lineChart(title, labels, series) {
  const height = 240;
  const top = 14;
  const bottom = 40;
  const left = 48;
  const plot = height - top - bottom;
  const max = niceMax(Math.max(0, ...series.flatMap((line) => line.values)));
  const step = (WIDTH - left - 16) / Math.max(1, labels.length - 1);
  const x = (i) => left + 8 + i * step;
  const y = (v) => top + plot - (v / max) * plot;
  const svg = s("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "lines" });
  svg.append(...axis(left, top, plot, max));
  labels.forEach((label, i) => {
    if (i % 7 === labels.length % 7 || i === labels.length - 1) {
      const anchor = i === labels.length - 1 ? "end" : "middle";
      svg.append(s("text", { x: x(i), y: height - bottom + 16, class: "tick", "text-anchor": anchor }, label.slice(5)));
    }
  });
  for (const line of series) {
    const points = line.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { points, class: `series ${line.cls}` }));
    line.values.forEach((v, i) => {
      svg.append(s("circle", { cx: x(i), cy: y(v), r: 3, class: `point ${line.cls}` }, s("title", {}, `${labels[i]}: ${formatCount(v)} ${line.name}`)));
    });
  }
  const legend = series.map((line) => h("span", { class: `key-item ${line.cls}` }, h("span", { class: "swatch", "aria-hidden": "true" }), line.name));
  const rows = labels.map((label, i) => [label, ...series.map((line) => formatCount(line.values[i]))]);
  return figure(title, svg, ["Day (UTC)", ...series.map((line) => line.name)], rows, legend);
}
